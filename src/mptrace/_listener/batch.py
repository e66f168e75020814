"""Batching for sinks that hand events to an OpenTelemetry SDK exporter.

``put()`` only queues, so the listener's loop never waits for the network;
one background thread per signal converts the events (``_schema.otel.span_from_dict``,
``_schema.otel.LogBuilder``) and sends them through the SDK exporter::

    export(events) ──▶ Batcher (bounded queue) ──thread──▶ convert ──▶ SDK exporter

A batch leaves when it is full (512) or at least once a second. Nothing is
ever retried beyond what the SDK exporter itself does, and nothing is lost
silently: a full queue, a malformed event, a failed export and whatever is
still queued when shutdown's time is up are all counted in ``dropped``. The
SDK's own complaints (a line per retry) stay off the terminal: the first
failure of each signal is one ``mptrace: warning`` line.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: Events waiting to be sent, per signal; more are counted as dropped.
QUEUE_CAPACITY = 20_000
#: The most events in one export request.
BATCH_SIZE = 512
#: The longest an event waits for its batch to fill, in seconds.
BATCH_INTERVAL = 1.0


# -- what the SDK exporters say ------------------------------------------------


class _SdkComplaints(logging.Handler):
    """Keeps the SDK exporters' last warning per thread instead of printing it.

    The SDK logs every failed attempt; in the listener, whose stderr is the
    user's terminal, that would be a line a second while a collector is down.
    mptrace prints the first failure once and counts the rest.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a complaint that cannot be formatted is not worth more
            return
        # Our own shutdown stops the SDK's retries; the reason worth telling
        # is the failure that came before it.
        if "Shutdown in progress" in message and (record.thread or 0) in self.last:
            return
        self.last[record.thread or 0] = message

    def take(self) -> str | None:
        """The calling thread's last complaint, forgotten once taken."""
        return self.last.pop(threading.get_ident(), None)


_complaints = _SdkComplaints()


def _quiet_sdk_exporters() -> None:
    sdk_logger = logging.getLogger("opentelemetry.exporter.otlp")
    if _complaints not in sdk_logger.handlers:
        sdk_logger.addHandler(_complaints)
        sdk_logger.propagate = False
    # The SDK hides a complaint that repeats another of the last 20 s, traces'
    # and logs' alike; mptrace needs each one (a refusal of logs is told by
    # it) and prints each kind once itself.
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("opentelemetry.exporter.otlp") and isinstance(
            logger, logging.Logger
        ):
            for f in list(logger.filters):
                if type(f).__name__ == "DuplicateFilter":
                    logger.removeFilter(f)


def _warn(text: str) -> None:
    try:
        sys.stderr.write(f"mptrace: warning: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover - no stderr left
        pass


#: What the SDK exporters say when the receiver has no such service: HTTP
#: 404 / 405, or gRPC's UNIMPLEMENTED.
_REFUSAL = re.compile(r"\b(404|405)\b|UNIMPLEMENTED|Not Found|Method Not Allowed")


def _succeeded(result: Any) -> bool:
    """An SDK export result is SUCCESS (the enum's class differs by SDK version)."""
    return getattr(result, "name", None) == "SUCCESS"


# -- batching ------------------------------------------------------------------


class Batcher:
    """A bounded queue of events, converted and sent in batches by one thread.

    ``put`` never blocks: with the queue full, the event is counted dropped.
    The thread wakes when a batch is full, every ``BATCH_INTERVAL`` seconds,
    or when ``poke`` finds a partial batch that has waited that long, and
    sends everything queued. ``close`` sends what is left until a deadline;
    ``abandon`` then counts whatever could not be sent.

    *convert* turns one event into what *send* takes (raising for a malformed
    event, which is counted dropped); *send* is an SDK exporter's ``export``,
    whose result says whether the receiver took the list; *hint* ends the
    warning about a failed send.
    """

    def __init__(
        self,
        label: str,
        what: str,
        convert: Callable[[dict[str, Any]], Any],
        send: Callable[[list[Any]], Any],
        hint: str = "",
        refusable: bool = False,
    ) -> None:
        self.label = label
        #: A receiver that answers "no such service" is not asked again.
        self.refusable = refusable
        self.refused = False
        self.hint = hint
        self.what = what
        self.convert = convert
        self.send = send
        self.capacity = QUEUE_CAPACITY
        self.batch_size = BATCH_SIZE
        self.interval = BATCH_INTERVAL
        self.overflowed = 0  # counted by the producer only
        self.unsent = 0  # counted under _lock
        self._queue: deque[dict[str, Any]] = deque()
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._failing = False  # the last export failed
        self._abandoned = False
        self._closing = False
        self._deadline = float("inf")
        self._warned: set[str] = set()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"mptrace-otlp-{what.split()[0]}", daemon=True
        )
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self.overflowed + self.unsent

    # -- the producer's side (the listener's thread) --

    def put(self, event: dict[str, Any]) -> None:
        queue = self._queue
        if self.refused:
            return
        if self._closing or len(queue) >= self.capacity:
            self.overflowed += 1
            return
        if not queue:
            self._oldest = time.monotonic()
        queue.append(event)
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def poke(self, now: bool = False) -> None:
        """Wake the thread if a partial batch has waited an interval (or *now*).

        Never blocks.
        """
        if (
            self._queue
            and not self._wake.is_set()
            and (now or time.monotonic() - self._oldest >= self.interval)
        ):
            self._wake.set()

    def busy(self) -> bool:
        """Something is queued or being sent."""
        return bool(self._queue) or self._in_flight > 0

    def close(self, deadline: float) -> None:
        """Have the thread send what is queued until *deadline* (monotonic); stop."""
        self._deadline = deadline
        self._closing = True
        self._wake.set()

    def struggling(self) -> bool:
        """The last export failed, or the one in progress has met an error."""
        return self._failing or self._thread.ident in _complaints.last

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(max(0.0, timeout))

    def abandon(self, until: float) -> None:
        """Count what is still queued or being sent as dropped; stop counting after.

        The thread gets until *until* (monotonic) to finish a send in progress.
        """
        self.wait(until - time.monotonic())
        with self._lock:
            self._abandoned = True
            self.unsent += len(self._queue) + self._in_flight
            self._queue.clear()
            self._in_flight = 0

    # -- the thread --

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            closing = self._closing
            self._send_queued()
            if closing:
                return

    def _send_queued(self) -> None:
        while self._queue:
            if self._closing and time.monotonic() >= self._deadline:
                return
            if not self._send_batch(self._take()) and self._closing:
                return  # the receiver is failing: at shutdown, don't wait on it again

    def _take(self) -> list[dict[str, Any]]:
        queue = self._queue
        with self._lock:
            batch = [queue.popleft() for _ in range(min(len(queue), self.batch_size))]
            self._in_flight = len(batch)
        if queue:
            self._oldest = time.monotonic()
        return batch

    def _send_batch(self, events: list[dict[str, Any]]) -> bool:
        items, malformed = self._convert(events)
        ok, why = True, ""
        if items:
            _complaints.take()  # forget an older complaint of this thread
            try:
                ok = _succeeded(self.send(items))
            except Exception as exc:
                ok = False
                why = repr(exc)
            complaint = _complaints.take()
            if not ok:
                why = why or complaint or "the export failed"
                if self.refusable and _REFUSAL.search(why):
                    self._refuse(why)
                    return ok
            self._failing = not ok
        with self._lock:
            if self._abandoned:
                return ok
            self._in_flight = 0
            self.unsent += malformed + (0 if ok else len(items))
        if not ok:
            self._warn_once(
                "send", f"could not send {len(items)} {self.what} ({why}){self.hint}"
            )
        return ok

    def _refuse(self, why: str) -> None:
        """The receiver takes no such records: stop offering them, say so once."""
        with self._lock:
            self.refused = True
            self._queue.clear()
            self._in_flight = 0
        _warn(
            f"{self.label}: the receiver does not take {self.what} ({why}); "
            f"none are sent to it for the rest of this run{self.hint}."
        )

    def _convert(self, events: list[dict[str, Any]]) -> tuple[list[Any], int]:
        items = []
        for event in events:
            try:
                items.append(self.convert(event))
            except Exception as exc:
                self._warn_once(
                    "convert",
                    f"dropped a malformed event ({exc.__class__.__name__}: {exc})",
                )
        return items, len(events) - len(items)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _warn(
                f"{self.label}: {text}; further failures are counted and "
                "reported at shutdown."
            )
