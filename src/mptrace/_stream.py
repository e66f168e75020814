"""The writing end of the funnel: one synchronous stream per process.

``Stream.send`` pickles a plain dict and writes it to this process's own
socket before it returns, so a process that then calls ``os._exit``, is
SIGKILLed or segfaults loses nothing it already sent. No lock is shared with
another process. When the listener is gone (or stops reading for longer than
``block_timeout`` seconds), the stream says so once on stderr and from then on
renders every event to this process's stderr instead: nothing is dropped and
nothing blocks.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
import weakref
from typing import Any

from . import _wire

_streams: weakref.WeakSet[Stream] = weakref.WeakSet()
_fork_hook_installed = False


def _process_name() -> str:
    import sys

    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return "MainProcess"
    try:
        return mp.current_process().name  # type: ignore[no-any-return]
    except Exception:  # pragma: no cover - interpreter shutting down
        return "?"


def _after_fork_in_child() -> None:
    for stream in list(_streams):
        stream._forget_parent()


class Stream:
    """This process's connection to the listener at *address*."""

    def __init__(self, address: str, authkey: bytes, block_timeout: float) -> None:
        global _fork_hook_installed
        self.address = address
        self.authkey = authkey
        self.block_timeout = block_timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failed = False
        self._pid = os.getpid()
        self._ppid = os.getppid()
        self._seq = 0
        self.fallback_count = 0
        _streams.add(self)
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True

    # -- life cycle -------------------------------------------------------

    def _forget_parent(self) -> None:
        """In a forked child: the inherited socket belongs to the parent."""
        self._lock = threading.Lock()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()  # our descriptor only; the parent's stays open
            except OSError:
                pass
        self._failed = False
        self._pid = os.getpid()
        self._ppid = os.getppid()
        self._seq = 0
        self.fallback_count = 0

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.block_timeout)
            sock.connect(self.address)
            sock.settimeout(None)
            _wire.client_handshake(sock, self.authkey)
            _wire.set_send_timeout(sock, self.block_timeout)
            hello = {
                "kind": "hello",
                "pid": self._pid,
                "ppid": self._ppid,
                "process": _process_name(),
                "seq": 0,
            }
            sock.sendall(_wire.encode(hello))
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def failed(self) -> bool:
        """True once this process has fallen back to stderr."""
        return self._failed

    def close(self) -> None:
        """Close the stream; the listener sees EOF. Idempotent."""
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is not None:
                try:
                    sock.close()
                except OSError:  # pragma: no cover
                    pass

    # -- the hot path -----------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        """Deliver *event* (a plain dict) or render it to stderr. Never raises."""
        with self._lock:
            self._seq += 1
            event["pid"] = self._pid
            event["ppid"] = self._ppid
            event["seq"] = self._seq
            if self._sock is None and not self._failed:
                try:
                    self._connect()
                except Exception as exc:
                    self._fail(f"cannot reach the listener at {self.address}: {exc!r}")
            sock = self._sock
            if sock is not None:
                try:
                    data = _wire.encode(event)
                except Exception as exc:
                    data = _wire.encode(_unpicklable(event, exc))
                try:
                    sock.sendall(data)
                    return
                except (BlockingIOError, TimeoutError):
                    self._fail(
                        f"the listener accepted nothing for {self.block_timeout} s"
                    )
                except OSError as exc:
                    self._fail(f"the listener is gone ({exc.__class__.__name__})")
            self._to_stderr(event)

    def _fail(self, why: str) -> None:
        """Give up on the listener for the rest of this process's life."""
        self._failed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
        _write_stderr(
            f"mptrace: warning: {why}; process {self._pid} now writes its "
            "records to its own stderr.\n"
        )

    def _to_stderr(self, event: dict[str, Any]) -> None:
        self.fallback_count += 1
        try:
            from ._render import render_fallback

            line = render_fallback(event)
        except Exception as exc:  # pragma: no cover - renderer bug
            line = f"{event!r} (rendering failed: {exc!r})"
        _write_stderr(line + "\n")


def _unpicklable(event: dict[str, Any], exc: Exception) -> dict[str, Any]:
    # Every value should be plain already; this is the last safety net.
    from ._plain import plain

    safe = plain(event)
    try:
        pickle.dumps(safe)
    except Exception:
        safe = {k: repr(v) for k, v in event.items()}
    safe["mptrace_error"] = f"event could not be pickled: {exc!r}"
    return safe  # type: ignore[no-any-return]


def _write_stderr(text: str) -> None:
    # os.write, not sys.stderr: no buffer lock that a fork could leave held.
    data = text.encode("utf-8", "backslashreplace")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:
        pass
