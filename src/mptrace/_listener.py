"""The listener process: the one place every event of a session arrives.

It runs in a fresh interpreter (``python -c``; the effect of the spawn start
method, without re-importing the user's ``__main__``), so it inherits no user
threads, locks or handlers::

    listening socket ──accept──▶ handshake thread ──ok, pipe──▶ selector
    selector: readable pipe ──▶ FrameReader ──▶ event dicts
        log    ──▶ processors (redaction, ...) ──▶ every exporter
        span / lifecycle ──▶ every exporter
        EOF    ──▶ an unfinished frame is counted as a lost record
    owner's "shutdown" frame ──▶ drain every stream, flush, exit
    owner gone (pidfd / getppid) ──▶ drain what is there, flush, exit (< 2 s)
"""

from __future__ import annotations

import os
import json
import pickle
import queue
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Any

from structlog import DropEvent

from . import _wire
from ._config import ListenerConfig
from ._proctable import ProcessTable

#: After a shutdown request: stop once no stream has said anything for this long.
DRAIN_IDLE = 0.25
#: After the owner died: stop draining after this long, whatever is left.
ORPHAN_DRAIN = 1.0
READ_SIZE = 256 * 1024
#: When a read brings less than this, let records pile up for BATCH_PAUSE
#: seconds before the next one: far fewer wake-ups on both sides of every
#: stream, for a millisecond of latency.
SMALL_READ = 16 * 1024
#: Seconds a child's process span waits for the child's stream to end.
HOLD_SPAN = 1.0
BATCH_PAUSE = 0.001
LISTENER_NAME = "mptrace-listener"

_ACCEPT, _WAKE, _OWNER, _PEER = range(4)
_LOG, _SPAN, _LIFECYCLE, _HELLO, _SHUTDOWN = (
    _wire.KIND_CODES[k] for k in ("log", "span", "lifecycle", "hello", "shutdown")
)
_PREFIX_SIZE = _wire.PREFIX.size
_PROCESS_SPAN = b'"mptrace.span": "process"'
_unpack_prefix = _wire.PREFIX.unpack_from


class _Peer:
    __slots__ = ("fd", "reader", "pid", "ppid", "process", "last_seq", "lost")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reader = _wire.FrameReader()
        self.pid: Any = "?"
        self.ppid: Any = None
        self.process = "?"
        self.last_seq = 0
        self.lost = 0


def build_exporters(cfg: ListenerConfig) -> list[Any]:
    from ._exporters import ConsoleExporter, JsonlExporter

    exporters: list[Any] = []
    for spec in cfg.exporters:
        if spec.kind == "console":
            exporters.append(ConsoleExporter())
        elif spec.kind == "jsonl":
            exporters.append(JsonlExporter(spec.target))  # type: ignore[arg-type]
        else:
            from ._otlp import make_otlp_exporter

            exporters.append(make_otlp_exporter(spec, cfg))
    return exporters


class Listener:
    def __init__(self, cfg: ListenerConfig, lsock: socket.socket, authkey: bytes) -> None:
        self.cfg = cfg
        self.authkey = authkey
        self.lsock = lsock
        self.exporters = build_exporters(cfg)
        # JSON-lines files take a log event's bytes as they came; the others
        # need it decoded.
        self.raw_exporters = [e for e in self.exporters if hasattr(e, "export_json")]
        self.dict_exporters = [e for e in self.exporters if not hasattr(e, "export_json")]
        self.processors = cfg.processors
        self.sel = selectors.DefaultSelector()
        self.handshaken: queue.SimpleQueue[int | str] = queue.SimpleQueue()
        self.handshakes_running = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.peers: dict[int, _Peer] = {}
        self.seq = 0
        self.pid = os.getpid()
        self.total_lost = 0
        self.exporter_errors: dict[int, int] = {}
        self.draining = False
        self.deadline = float("inf")
        self.last_data = time.monotonic()
        self.table = ProcessTable()
        self.ended_pids: set[Any] = set()
        self.held_spans: dict[int, tuple[float, dict[str, Any]]] = {}
        self._draining_pids: set[int] = set()
        self.owner_gone = False
        self._owner_fd: int | None = None

    # -- the listener's own voice ------------------------------------------

    def report(self, level: str, message: str, **fields: Any) -> None:
        self.seq += 1
        event = {
            "kind": "log",
            "ts": time.time_ns(),
            "level": level,
            "logger": "mptrace",
            "event": message,
            "process": LISTENER_NAME,
            **fields,
            "pid": self.pid,
            "ppid": self.cfg.owner_pid,
            "seq": self.seq,
        }
        self.export(event)

    # -- setup -------------------------------------------------------------

    def _watch_owner(self) -> None:
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, _ACCEPT)
        self.sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        try:
            self._owner_fd = os.pidfd_open(self.cfg.owner_pid)  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            self._owner_fd = None  # polled through getppid instead
        if self._owner_fd is not None:
            self.sel.register(self._owner_fd, selectors.EVENT_READ, _OWNER)

    def _owner_alive(self) -> bool:
        if self._owner_fd is not None:
            return not self.owner_gone
        return os.getppid() == self.cfg.owner_pid

    # -- connections ---------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # pragma: no cover - out of descriptors
                self.report("error", f"accepting a connection failed: {exc!r}")
                return
            sock.setblocking(True)
            self.handshakes_running += 1
            threading.Thread(target=self._handshake, args=(sock,), daemon=True).start()

    def _handshake(self, sock: socket.socket) -> None:
        try:
            result: int | str = _wire.accept_stream(sock, self.authkey)
        except Exception as exc:
            result = f"refused a connection that failed authentication ({exc.__class__.__name__}: {exc})"
        finally:
            sock.close()
        self.handshaken.put(result)
        try:
            self._wake_w.send(b"\0")
        except OSError:  # pragma: no cover - shutting down
            pass

    def _take_handshaken(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                item = self.handshaken.get_nowait()
            except queue.Empty:
                return
            self.handshakes_running -= 1
            if isinstance(item, str):
                self.report("warning", item)
                continue
            self.peers[item] = _Peer(item)
            self.sel.register(item, selectors.EVENT_READ, _PEER)

    def _read(self, fd: int) -> int:
        peer = self.peers.get(fd)
        if peer is None:  # closed while draining another stream
            return 0
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            data = b""
        if not data:
            self._close(peer)
            return 0
        self.last_data = time.monotonic()
        try:
            frames = peer.reader.feed(data)
        except ValueError as exc:
            self.report("error", f"the stream of pid {peer.pid} is corrupt ({exc}); closing it")
            self._close(peer, corrupt=True)
            return 0
        for body in frames:
            try:
                self._dispatch(peer, body)
            except Exception as exc:  # a listener bug costs one record, not the session
                self._lost(peer, 1, f"the listener failed on it ({exc!r})")
        return len(data)

    def _close(self, peer: _Peer, corrupt: bool = False) -> None:
        self.sel.unregister(peer.fd)
        del self.peers[peer.fd]
        os.close(peer.fd)
        self.ended_pids.add(peer.pid)
        self._release_held(peer.pid)
        if peer.reader.pending and not corrupt:
            self._lost(peer, 1, "its last record was cut off mid-write")

    def _lost(self, peer: _Peer, count: int, why: str) -> None:
        peer.lost += count
        self.total_lost += count
        noun = "record" if count == 1 else "records"
        self.report(
            "warning",
            f"{count} {noun} lost from pid {peer.pid} ({peer.process}): {why}",
            lost=count,
            lost_pid=peer.pid,
        )

    # -- events ----------------------------------------------------------------

    def _decode(self, peer: _Peer, body: memoryview) -> dict[str, Any] | None:
        try:
            event = json.loads(bytes(body))
        except Exception as exc:
            self._lost(peer, 1, f"a record could not be read ({exc!r})")
            return None
        if type(event) is not dict:
            self._lost(peer, 1, f"a record was a {type(event).__name__}, not an object")
            return None
        return event

    def _dispatch(self, peer: _Peer, frame: memoryview) -> None:
        if len(frame) < _PREFIX_SIZE:
            self._lost(peer, 1, "a frame was too short to hold a record")
            return
        kind, seq = _unpack_prefix(frame)
        gap = seq - peer.last_seq - 1
        peer.last_seq = seq
        if gap > 0:
            self._lost(peer, gap, "a gap in its sequence numbers")
        body = frame[_PREFIX_SIZE:]
        # Only a process span needs decoding (the table completes it), and a
        # log event only when a processor must see it.
        if (kind == _SPAN and not self.dict_exporters) or (kind == _LOG and not self.processors):
            raw = _one_json_line(body)
            if raw is not None and not (kind == _SPAN and _PROCESS_SPAN in raw):
                if kind == _LOG:
                    self.table.on_raw_log(peer.pid, raw)
                self._export_json(peer, raw)
                return
        event = self._decode(peer, body)
        if event is None:
            return
        if kind == _LOG:
            self.table.on_log(event.get("pid"), event.get("level"))
            self._process_log(event)
        elif kind == _SPAN:
            attributes = event.get("attributes")
            if type(attributes) is dict and attributes.get("mptrace.span") == "process":
                self._process_span(attributes.get("process.pid"), event)
            else:
                self.export(event)
        elif kind == _LIFECYCLE:
            self.table.on_lifecycle(event)
            self.export(event)
        elif kind == _HELLO:
            peer.pid = event.get("pid", "?")
            peer.ppid = event.get("ppid")
            peer.process = event.get("process", "?")
        elif kind == _SHUTDOWN:
            if peer.pid == self.cfg.owner_pid:
                self.begin_drain(self.cfg.shutdown_timeout)
        else:
            self.export(event)

    def _process_span(self, pid: object, span: dict[str, Any]) -> None:
        """Export a child's process span once the child's own account is in.

        The parent ends the span when it sees the exit; what the child wrote
        before exiting may still sit in its stream, or its stream may not be
        taken in yet. Hold the span until that stream ends, for a moment at
        most.
        """
        self._drain_pid(pid)
        if type(pid) is int and pid not in self.ended_pids:
            self.held_spans[pid] = (time.monotonic() + HOLD_SPAN, span)
            return
        self._release_span(span)

    def _release_span(self, span: dict[str, Any]) -> None:
        self.table.complete_span(span)
        self.export(span)

    def _release_held(self, pid: object = None, everything: bool = False) -> None:
        if pid is not None:
            held = self.held_spans.pop(pid, None)  # type: ignore[call-overload]
            if held is not None:
                self._release_span(held[1])
        if everything or self.held_spans:
            now = time.monotonic()
            for key, (deadline, span) in list(self.held_spans.items()):
                if everything or now >= deadline:
                    del self.held_spans[key]
                    self._release_span(span)

    def _drain_pid(self, pid: object) -> None:
        """Read all a (now dead) child wrote, so its account precedes its span."""
        if type(pid) is not int or pid in self._draining_pids:
            return
        self._draining_pids.add(pid)
        self._take_handshaken()
        try:
            for fd, peer in list(self.peers.items()):
                if peer.pid == pid:
                    while fd in self.peers and self._read(fd):
                        pass
        finally:
            self._draining_pids.discard(pid)

    def _export_json(self, peer: _Peer, body: bytes) -> None:
        """An event nothing needs to change: JSON-lines files take its bytes."""
        for exporter in self.raw_exporters:
            try:
                exporter.export_json(body)
            except Exception as exc:
                self._exporter_failed(exporter, exc)
        if self.dict_exporters:
            event = self._decode(peer, body)
            if event is not None:
                self.export(event, self.dict_exporters)

    def _process_log(self, event: dict[str, Any]) -> None:
        for proc in self.processors:
            try:
                event = proc(None, event.get("level", "info"), event)
            except DropEvent:
                return  # the processor's decision, as in structlog
            except BaseException as exc:  # even SystemExit must not stop the listener
                event["mptrace_error"] = f"processor {proc!r} failed: {exc!r}"
        self.export(event)

    def export(self, event: dict[str, Any], exporters: list[Any] | None = None) -> None:
        for exporter in self.exporters if exporters is None else exporters:
            try:
                exporter.export(event)
            except Exception as exc:
                self._exporter_failed(exporter, exc)

    def _exporter_failed(self, exporter: Any, exc: Exception) -> None:
        key = id(exporter)
        count = self.exporter_errors.get(key, 0)
        self.exporter_errors[key] = count + 1
        if not count:
            _stderr(
                f"mptrace: warning: exporter {type(exporter).__name__} failed "
                f"({exc!r}); failures are counted and reported at shutdown.\n"
            )

    def flush(self) -> None:
        for exporter in self.exporters:
            try:
                exporter.flush()
            except Exception:  # counted by export's path; nothing more to do
                pass

    # -- the loop ----------------------------------------------------------------

    def begin_drain(self, seconds: float) -> None:
        if not self.draining:
            self.draining = True
            self.deadline = time.monotonic() + seconds
        else:
            self.deadline = min(self.deadline, time.monotonic() + seconds)

    def _done_draining(self, idle: bool) -> bool:
        now = time.monotonic()
        if now >= self.deadline:
            return True
        if self.handshakes_running:
            return False
        others = [p for p in self.peers.values() if p.pid != self.cfg.owner_pid]
        if not others:
            return True
        return idle and now - self.last_data >= DRAIN_IDLE

    def run(self) -> None:
        self._watch_owner()
        select = self.sel.select
        while True:
            ready = select(0.05 if self.draining else 0.5)
            most = 0
            for key, _ in ready:
                what = key.data
                if what == _PEER:
                    most = max(most, self._read(key.fileobj))  # type: ignore[arg-type]
                elif what == _ACCEPT:
                    self._accept()
                elif what == _WAKE:
                    self._take_handshaken()
                elif what == _OWNER:
                    self.sel.unregister(key.fileobj)
                    self.owner_gone = True
            if self.held_spans:
                self._release_held()
            if not ready:
                self.flush()
            if not self.draining and not self._owner_alive():
                self.owner_gone = True
                self.begin_drain(ORPHAN_DRAIN)
            if self.draining and self._done_draining(idle=not ready):
                break
            if 0 < most < SMALL_READ and not self.draining:
                time.sleep(BATCH_PAUSE)
        self.finish()

    def finish(self) -> None:
        self._release_held(everything=True)
        rows = self.table.summary()
        for exporter in self.exporters:
            summary = getattr(exporter, "summary", None)
            if summary is not None and rows:
                try:
                    summary(rows)
                except Exception as exc:
                    self._exporter_failed(exporter, exc)
        for peer in list(self.peers.values()):
            if peer.pid != self.cfg.owner_pid and peer.reader.pending:
                self._lost(peer, 1, "its last record was still being written at shutdown")
        problems = []
        if self.total_lost:
            problems.append(f"{self.total_lost} record{'' if self.total_lost == 1 else 's'} lost")
        failures = sum(self.exporter_errors.values())
        if failures:
            problems.append(f"{failures} events an exporter failed to take")
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception as exc:
                problems.append(f"exporter {type(exporter).__name__} failed to shut down: {exc!r}")
            dropped = getattr(exporter, "dropped", 0)
            if dropped:
                problems.append(f"{dropped} {exporter.dropped_what} dropped by {exporter.name}")
        if problems:
            _stderr("mptrace: at shutdown: " + "; ".join(problems) + ".\n")
        if self.owner_gone:
            self._remove_session_dir()

    def _remove_session_dir(self) -> None:
        """The owner died without cleaning up: its private directory goes with us."""
        import shutil

        try:
            path = self.lsock.getsockname()
        except OSError:
            return
        if isinstance(path, str) and os.path.basename(path) == "funnel.sock":
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _one_json_line(body: memoryview) -> bytes | None:
    """*body* as bytes if it can be written as one line as it is.

    Our encoder writes one object with no raw newline; anything else takes the
    decoding path, which counts it as lost.
    """
    raw = bytes(body)
    if raw[:1] == b"{" and raw[-1:] == b"}" and b"\n" not in raw:
        return raw
    return None


def _stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover
        pass


def bootstrap() -> None:
    """Entry point: ``python -c '...; bootstrap()' LISTEN_FD STATUS_FD``.

    Standard input carries ``(sys.path, pickled (config, key))``; the key never
    appears on a command line or in the environment. The listener answers
    ``ok`` or the reason it cannot start on the status pipe.
    """
    # Ctrl-C reaches the whole foreground process group; the owner decides
    # when the listener stops, after draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listen_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    status = os.fdopen(status_fd, "w")
    try:
        path, inner = pickle.loads(sys.stdin.buffer.read())
        sys.path[:] = [p for p in path if p] + [p for p in sys.path if p not in path]
        cfg, authkey = pickle.loads(inner)
        lsock = socket.socket(fileno=listen_fd)
        listener = Listener(cfg, lsock, authkey)
    except BaseException as exc:
        status.write(f"{type(exc).__name__}: {exc}")
        status.close()
        raise SystemExit(1) from None
    status.write("ok")
    status.close()
    try:
        listener.run()
    except KeyboardInterrupt:
        listener.finish()
