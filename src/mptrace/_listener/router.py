"""The listener process, router side: every frame to the sinks that want it.

It runs in a fresh interpreter (``python -c``; the effect of the spawn start
method, without re-importing the user's ``__main__``), so it inherits no user
threads, locks or handlers. ``transport`` hands it frames; by the kind and
flags in each frame's header (never by searching the JSON)::

    log        ──▶ count errors by level ──▶ processors, if any ──▶ sinks
    span       ──▶ sinks; a child's process span waits until that child's
                   stream has ended (HOLD_SPAN at most), then the process
                   table adds the child's own account to it; an announced
                   span waits for its end, or its stream's (``cut``)
    lifecycle  ──▶ process table ──▶ sinks
    shutdown   ──▶ drain every stream, flush, report, exit
    flush      ──▶ read what every stream holds, flush every sink, answer

Sinks get batches: a raw sink (JSON lines) takes a frame's bytes, any other
a decoded dict. A sink that raises costs counted events and one warning.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from typing import Any

from mptrace._listener import problems as _problems
from mptrace._listener.cut import OpenSpans
from mptrace._listener.problems import Problems
from mptrace._listener.problems import sink_name as _name
from mptrace._listener.problems import stderr as _stderr
from mptrace._listener.proctable import ProcessTable
from mptrace._listener.registry import build as build_sink
from mptrace._listener.stacks import StackTaker
from mptrace._listener.transport import Frame, Peer, Transport
from mptrace._schema import events as _events
from mptrace._schema import handshake as _handshake
from mptrace._schema.config import ListenerConfig
from mptrace._schema.events import Event

LISTENER_NAME = "mptrace-listener"
#: Seconds a child's process span waits for the child's stream to end.
HOLD_SPAN = 1.0
#: How many ended streams are remembered, for process spans that come after.
ENDED_MEMORY = 10_000
#: The longest a flush request reads the streams before flushing the sinks.
FLUSH_READ = 1.0
#: Seconds a written batch may sit in a sink's buffer (a file's, a console's)
#: before the sink is told to flush it, however steady the input: a record
#: that reached the listener is with the operating system within ~0.1 s.
FLUSH_AFTER = 0.05

_LOG, _SPAN, _LIFECYCLE, _SHUTDOWN, _FLUSH = (
    _events.KIND_CODES[k] for k in ("log", "span", "lifecycle", "shutdown", "flush")
)


class _NeverRaised(Exception):
    pass


class _Held:
    """A process span waiting for its child's stream to end."""

    __slots__ = ("deadline", "peer", "ready", "row", "span")

    def __init__(
        self, span: Event, peer: Peer, deadline: float, row: dict[str, Any] | None
    ) -> None:
        self.span = span
        self.peer = peer
        self.deadline = deadline
        self.ready = False
        self.row = row  # the process's row now: its pid may be given again


class Router:
    """Routes frames by kind to the process table, processors and sinks."""

    def __init__(
        self, cfg: ListenerConfig, transport: Transport, ack_fd: int | None = None
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.ack_fd = ack_fd
        self.sinks = [build_sink(spec, cfg) for spec in cfg.exporters]
        self.raw_sinks = [
            s for s in self.sinks if callable(getattr(s, "export_raw", None))
        ]
        self.dict_sinks = [s for s in self.sinks if s not in self.raw_sinks]
        # Only files keep what they got: a console's or exporter's queue dies.
        _handshake.acknowledging = bool(self.sinks) and not self.dict_sinks
        self.processors = cfg.processors
        self._drop: type[BaseException] = _NeverRaised
        if self.processors:
            from structlog import DropEvent

            self._drop = DropEvent
        self.table = ProcessTable()
        self.held: dict[Any, _Held] = {}  # by the child's pid
        self.open_spans = OpenSpans()  # announced spans, by stream (``cut``)
        self.waiting: dict[Peer, list[Any]] = {}  # a parent's events behind them
        self.ended: OrderedDict[Any, None] = OrderedDict()
        self.sink_errors: dict[int, int] = {}
        self._batch: list[tuple[bytes | None, Event | None, Peer | None]] = []
        self._flush_wanted = False
        self._unflushed_since = 0.0  # when a batch went to the sinks unflushed
        self.pid = os.getpid()
        self.seq = 0
        self.stacks = StackTaker(cfg, transport, lambda e: self._emit(None, None, e))
        self.settled = False  # the owner has gone on; see settle()
        self.problems = Problems()

    # -- the listener's own voice ------------------------------------------

    def report(self, level: str, message: str, **fields: Any) -> None:
        self.seq += 1
        event = _events.log_event(level, "mptrace", message, LISTENER_NAME)
        event.update(fields)
        event.update(pid=self.pid, ppid=self.cfg.owner_pid, seq=self.seq)
        self._batch.append((None, event, None))

    # -- frames --------------------------------------------------------------

    def on_frames(self, peer: Peer, frames: list[Frame]) -> None:
        for kind, flags, body in frames:
            try:
                self._route(peer, kind, flags, body)
            except Exception as exc:  # a listener bug costs one record, not the session
                self.transport.lost(peer, 1, f"the listener failed on it ({exc!r})")
        self._flush_batch()

    def _route(self, peer: Peer, kind: int, flags: int, body: memoryview) -> None:
        if kind == _LOG:
            self.table.on_log(peer.pid, flags)
            if not self.processors:
                self._raw(peer, body)
                return
            event = self._decode(peer, body)
            if event is not None:
                self._process_log(event)
        elif kind == _SPAN:
            if flags & _events.OPEN_SPAN:
                self.open_spans.begin(peer, self._decode(peer, body))
                return
            if peer in self.open_spans:  # maybe the end of an announced one
                self.open_spans.end(peer, self._decode(peer, body))
            if not flags & _events.PROCESS_SPAN:
                self._raw(peer, body)
                return
            span = self._decode(peer, body)
            if span is not None:
                self._hold(peer, span)
        elif kind == _LIFECYCLE:
            event = self._decode(peer, body)
            if event is not None:
                self.table.on_lifecycle(event)
                self._emit(peer, None, event)
        elif kind in (_SHUTDOWN, _FLUSH):
            if peer.pid == self.cfg.owner_pid:
                if kind == _SHUTDOWN:
                    self.transport.begin_drain(self.cfg.shutdown_timeout)
                else:
                    self._flush_wanted = True
        else:
            self._raw(peer, body)

    def _raw(self, peer: Peer, body: memoryview) -> None:
        """An event nothing here changes: raw sinks take its bytes."""
        raw = bytes(body)
        if raw[:1] == b"{" and raw[-1:] == b"}" and b"\n" not in raw:
            self._emit(peer, raw, None)
        else:  # not one JSON line as our encoder writes it: decode, or count it
            event = self._decode(peer, body)
            if event is not None:
                self._emit(peer, None, event)

    def _decode(self, peer: Peer, body: memoryview | bytes) -> Event | None:
        try:
            event = json.loads(bytes(body))
        except Exception as exc:
            self.transport.lost(peer, 1, f"a record could not be read ({exc!r})")
            return None
        if type(event) is not dict:
            why = f"a record was a {type(event).__name__}, not an object"
            self.transport.lost(peer, 1, why)
            return None
        return event

    def _process_log(self, event: Event) -> None:
        for proc in self.processors:
            try:
                event = proc(None, event.get("level", "info"), event)
            except self._drop:
                return  # the processor's decision, as in structlog
            except BaseException as exc:  # even SystemExit must not stop the listener
                event["mptrace_error"] = f"processor {proc!r} failed: {exc!r}"
        self._emit(None, None, event)

    def _emit(self, peer: Peer | None, raw: bytes | None, event: Event | None) -> None:
        """Queue an event for the sinks, behind a span its process is waiting on."""
        waiting = self.waiting.get(peer) if peer is not None else None
        if waiting is not None:
            waiting.append((raw, event, peer))
        else:
            self._batch.append((raw, event, peer))

    # -- process spans -------------------------------------------------------

    def _hold(self, peer: Peer, span: Event) -> None:
        """Export a child's process span once the child's own account is in.

        The parent ends the span when it sees the exit; what the child wrote
        before exiting may still sit in its stream. The span waits until that
        stream ends (``on_end``), for HOLD_SPAN at most, and so does whatever
        the parent sent after it: a process's lines keep its order.
        """
        pid = (span.get("attributes") or {}).get("process.pid")
        if type(pid) is not int or pid in self.ended or self.table.has_finished(pid):
            self.table.complete_span(span)
            self._emit(peer, None, span)
            return
        row = self.table.rows.get(pid)
        held = _Held(span, peer, time.monotonic() + HOLD_SPAN, row)
        self.held[pid] = held
        self.waiting.setdefault(peer, []).append((None, None, held))

    def _release(self, pid: Any) -> None:
        held = self.held.pop(pid, None)
        if held is None:
            return
        self.table.complete_span(held.span, held.row)
        held.ready = True
        queue = self.waiting.get(held.peer) or []
        # Everything before the next span still waiting goes out now.
        while queue:
            raw, event, item = queue[0]
            if isinstance(item, _Held):
                if not item.ready:
                    break
                event, item = item.span, None
            queue.pop(0)
            self._batch.append((raw, event, item))
        if not queue:
            self.waiting.pop(held.peer, None)

    def on_end(self, peer: Peer) -> None:
        _handshake.release(peer.fd)
        for span in self.open_spans.cut(peer):
            self._emit(peer, None, span)
        if peer.pid in self.held:
            self._release(peer.pid)
        else:
            self.ended[peer.pid] = None
            if len(self.ended) > ENDED_MEMORY:
                self.ended.popitem(last=False)
        self._flush_batch()

    def on_tick(self) -> None:
        if self.held:
            now = time.monotonic()
            for pid, held in list(self.held.items()):
                if now >= held.deadline:
                    self._release(pid)
        if self._flush_wanted:
            self._flush_wanted = False
            self._answer_flush()
        self.stacks.tick()
        self._flush_batch()
        since = self._unflushed_since
        if since and time.monotonic() - since >= FLUSH_AFTER:
            self.on_idle()

    @property
    def waiting_to_flush(self) -> bool:
        """True while a sink holds a batch unflushed: tick again soon."""
        return bool(self._unflushed_since)

    def on_idle(self) -> None:
        self._unflushed_since = 0.0
        for sink in self.sinks:
            tick = getattr(sink, "tick", None) or getattr(sink, "force_flush", None)
            self._call(sink, tick)
        self._acknowledge()

    def _acknowledge(self) -> None:
        """Every frame read so far is in the files, but those held behind a
        process span: tell each stream's writer, which then need not keep them."""
        if _handshake.acknowledging:
            for peer in list(self.transport.peers.values()):
                if peer not in self.waiting:
                    _handshake.acknowledge(peer.fd, peer.last_seq)

    def _answer_flush(self) -> None:
        self.transport.read_available(FLUSH_READ)
        self._flush_batch()
        for sink in self.sinks:
            self._call(sink, getattr(sink, "force_flush", None))
        self._acknowledge()
        if self.ack_fd is not None:
            try:
                os.write(self.ack_fd, b"f")
            except OSError:
                pass

    # -- sinks -----------------------------------------------------------------

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if not self._unflushed_since:
            self._unflushed_since = time.monotonic()
        if self.raw_sinks:
            lines = [
                raw if raw is not None else _events.to_json(ev or {})
                for raw, ev, _ in batch
            ]
            for sink in self.raw_sinks:
                self._call(sink, sink.export_raw, lines)
        if self.dict_sinks:
            events = []
            for raw, event, peer in batch:
                if event is None and peer is not None:
                    event = self._decode(peer, raw)  # type: ignore[arg-type]
                if event is not None:
                    events.append(event)
            for sink in self.dict_sinks:
                self._call(sink, sink.export, events)

    def _call(self, sink: Any, method: Any, *args: Any) -> None:
        if method is None:
            return
        try:
            method(*args)
        except Exception as exc:
            key = id(sink)
            count = self.sink_errors.get(key, 0)
            self.sink_errors[key] = count + 1
            if not count:
                _stderr(
                    f"mptrace: warning: exporter {_name(sink)} failed ({exc!r}); "
                    "failures are counted and reported at shutdown.\n"
                )

    # -- the end ---------------------------------------------------------------

    def settle(self) -> None:
        """The owner's session ends while others still write (a manager, a
        pool left open, a daemon): all so far goes to the sinks and the owner
        goes on (``d``); :meth:`finish` runs once their streams have closed."""
        self._settle_sinks()
        self.settled = True
        if self.ack_fd is not None:
            try:
                os.write(self.ack_fd, b"d")
            except OSError:
                pass

    def _settle_sinks(self) -> None:
        for pid in list(self.held):
            self._release(pid)
        self._flush_batch()
        rows = self.table.summary()
        if rows:
            for sink in self.sinks:
                self._call(sink, getattr(sink, "summary", None), rows)
        for sink in self.sinks:
            self._call(sink, getattr(sink, "force_flush", None))
        self._say_problems()

    def finish(self) -> None:
        if not self.settled:
            self._settle_sinks()
        for pid in list(self.held):
            self._release(pid)
        self.transport.close()
        self._flush_batch()
        for sink in self.sinks:
            stop = getattr(sink, "shutdown", None)
            try:
                if stop is not None:
                    stop(self.cfg.shutdown_timeout)
            except Exception as exc:
                why = f"exporter {_name(sink)} failed to shut down: {exc!r}"
                self.problems.extra[why] = 1
        self._acknowledge()  # all is in the files: nothing for a writer to give again
        self._say_problems()

    def _say_problems(self) -> None:
        counts = {"lost": self.transport.total_lost, "refused": self.transport.refused}
        counts["failed"] = sum(self.sink_errors.values())
        for sink in self.sinks:
            counts[f"dropped {_name(sink)}"] = getattr(sink, "dropped", 0) or 0
        self.problems.say(counts, self.sinks)
        self.problems.took_over(self.cfg.took_over, _problems.given_again)
