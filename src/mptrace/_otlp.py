"""OTLP export from the listener: spans and log records, batched, over gRPC or HTTP.

Events arrive as plain dicts (see docs/jsonl-schema.md). ``export()`` only
queues them, so the listener's loop never waits for the network; one
background thread per signal turns them back into OpenTelemetry SDK objects
(``ReadableSpan``, log records; see ``_otlp_convert.py``) and sends them
through the SDK's own ``OTLPSpanExporter`` / ``OTLPLogExporter``::

    export(event) ──▶ Batcher (bounded queue) ──thread──▶ convert ──▶ SDK exporter

A batch leaves when it is full (512) or at least once a second. Nothing is
ever retried beyond what the SDK exporter itself does, and nothing is lost
silently: a full queue, a malformed event, a failed export and whatever is
still queued when shutdown's time is up are all counted in ``dropped``, which
the listener reports when it stops. The SDK's own complaints (a line per
retry) stay off the terminal: the first failure of each signal is one
``mptrace: warning`` line, and at shutdown a signal whose receiver is failing
is not waited on.

Configuration is the SDK's: with no endpoint in the exporter spec, the
``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, certificates,
compression, timeout) apply as they would to any OpenTelemetry program.
Unless ``OTEL_EXPORTER_OTLP_TIMEOUT`` (or its per-signal form) says
otherwise, one export gives up after 5 s, not the SDK's 10, so a receiver that
is down cannot hold the end of the program for long.
``OTEL_LOGS_EXPORTER=none`` sends spans only (Jaeger, for one, takes no logs).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._config import ExporterSpec, ListenerConfig
from ._otlp_convert import LogBuilder, SpanBuilder, _Resources

#: Events waiting to be sent, per signal; more are counted as dropped.
QUEUE_CAPACITY = 20_000
#: The most events in one export request.
BATCH_SIZE = 512
#: The longest an event waits for its batch to fill, in seconds.
BATCH_INTERVAL = 1.0
#: One export's time limit (seconds) unless OTEL_EXPORTER_OTLP_TIMEOUT is set.
EXPORT_TIMEOUT = 5.0
#: The longest ``shutdown()`` spends sending what is queued (also bounded by
#: the session's shutdown_timeout).
FLUSH_LIMIT = 5.0
#: After the SDK exporter is shut down, how long a stuck send may take to end.
ABANDON_GRACE = 1.0

#: Said when log records cannot be sent: some receivers take spans only.
LOGS_HINT = "; if the receiver takes no logs (Jaeger), set OTEL_LOGS_EXPORTER=none"

GRPC_DEFAULT = "http://localhost:4317"
HTTP_DEFAULT = "http://localhost:4318"


def make_otlp_exporter(spec: ExporterSpec, cfg: ListenerConfig) -> OtlpExporter:
    """The listener's exporter for ``otlp`` (gRPC) and ``otlp+http`` specs."""
    return OtlpExporter(spec, cfg)


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


def _warn(text: str) -> None:
    try:
        sys.stderr.write(f"mptrace: warning: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover - no stderr left
        pass


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
    event, which is counted dropped); *send* sends a list and returns whether
    the receiver took it; *hint* ends the warning about a failed send.
    """

    def __init__(
        self,
        label: str,
        what: str,
        convert: Callable[[dict[str, Any]], Any],
        send: Callable[[list[Any]], bool],
        hint: str = "",
    ) -> None:
        self.label = label
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
        if self._closing or len(queue) >= self.capacity:
            self.overflowed += 1
            return
        if not queue:
            self._oldest = time.monotonic()
        queue.append(event)
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def poke(self) -> None:
        """Wake the thread if a partial batch has waited an interval; never blocks."""
        if (
            self._queue
            and not self._wake.is_set()
            and time.monotonic() - self._oldest >= self.interval
        ):
            self._wake.set()

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
                ok = self.send(items)
            except Exception as exc:
                ok = False
                why = repr(exc)
            complaint = _complaints.take()
            if not ok:
                why = why or complaint or "the export failed"
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


# -- the exporter --------------------------------------------------------------


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _signal_url(base: str, signal: str) -> str:
    """An OTLP/HTTP URL for *signal*, from a base URL or another signal's URL."""
    base = base.rstrip("/")
    for known in ("/v1/traces", "/v1/logs"):
        base = base.removesuffix(known)
    return f"{base}/v1/{signal}"


class OtlpExporter:
    """The listener's OTLP exporter: spans, and log records, to one receiver.

    ``export`` queues, ``flush`` nudges, ``shutdown`` sends what is queued
    within ``min(shutdown_timeout, FLUSH_LIMIT)`` seconds and counts the rest
    in ``dropped``. ``name`` says which exporter and where, for messages.
    """

    def __init__(self, spec: ExporterSpec, cfg: ListenerConfig) -> None:
        _quiet_sdk_exporters()
        self.protocol = "http" if spec.kind == "otlp+http" else "grpc"
        self.target = spec.target
        self.endpoint = self._describe_endpoint()
        self.name = f"{spec.kind} ({self.endpoint})"
        self.flush_limit = min(cfg.shutdown_timeout, FLUSH_LIMIT)
        resources = _Resources(
            {"service.name": cfg.service_name, **(cfg.resource or {})}
        )
        self.sdk_exporters: list[Any] = []
        self.spans = self._batcher("spans", SpanBuilder(resources), "traces")
        self.logs: Batcher | None = None
        logs_off = (os.environ.get("OTEL_LOGS_EXPORTER") or "").strip().lower() == "none"
        if spec.logs and not logs_off:
            self.logs = self._batcher(
                "log records", LogBuilder(resources), "logs", LOGS_HINT
            )

    # -- setup --

    def _describe_endpoint(self) -> str:
        if self.protocol == "grpc":
            return (
                self.target
                or _env(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
                )
                or GRPC_DEFAULT
            )
        if self.target:
            return _signal_url(self.target, "traces")
        specific = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return specific or _signal_url(
            _env("OTEL_EXPORTER_OTLP_ENDPOINT") or HTTP_DEFAULT, "traces"
        )

    def _sdk_kwargs(self, signal: str) -> dict[str, Any]:
        """Only what the spec says, so the SDK reads the environment for the rest."""
        kwargs: dict[str, Any] = {}
        if self.target:
            if self.protocol == "http":
                kwargs["endpoint"] = _signal_url(self.target, signal)
            else:
                kwargs["endpoint"] = self.target
                if self.target.lower().startswith("http://"):
                    kwargs["insecure"] = True
        if not _env(
            "OTEL_EXPORTER_OTLP_TIMEOUT", f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
        ):
            kwargs["timeout"] = EXPORT_TIMEOUT
        return kwargs

    def _sdk_exporter(self, signal: str) -> Any:
        if self.protocol == "grpc":
            if signal == "traces":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as Exporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                    OTLPLogExporter as Exporter,
                )
        elif signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as Exporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (
                OTLPLogExporter as Exporter,
            )
        return Exporter(**self._sdk_kwargs(signal))

    def _batcher(
        self,
        what: str,
        convert: Callable[[dict[str, Any]], Any],
        signal: str,
        hint: str = "",
    ) -> Batcher:
        sdk = self._sdk_exporter(signal)
        self.sdk_exporters.append(sdk)

        def send(items: Sequence[Any]) -> bool:
            return _succeeded(sdk.export(items))

        return Batcher(self.name, what, convert, send, hint)

    @property
    def batchers(self) -> list[Batcher]:
        return [b for b in (self.spans, self.logs) if b is not None]

    # -- what the listener calls --

    def export(self, event: dict[str, Any]) -> None:
        kind = event.get("kind", "log")
        if kind == "span":
            self.spans.put(event)
        elif kind == "log" and self.logs is not None:
            self.logs.put(event)
        # lifecycle events reach OTLP as events of the process span

    def flush(self) -> None:
        for batcher in self.batchers:
            batcher.poke()

    def shutdown(self) -> None:
        batchers = self.batchers
        deadline = time.monotonic() + self.flush_limit
        for batcher in batchers:
            batcher.close(deadline)
        _wait_for(batchers, deadline)
        grace = time.monotonic() + ABANDON_GRACE
        _stop_all(self.sdk_exporters, grace)
        for batcher in batchers:
            batcher.abandon(grace)

    @property
    def dropped(self) -> int:
        return sum(b.dropped for b in self.batchers)

    @property
    def dropped_what(self) -> str:
        counts = [(b.dropped, b.what) for b in self.batchers if b.dropped]
        if len(counts) == 1:
            return counts[0][1]
        if not counts:
            return self.spans.what
        return "events (" + ", ".join(f"{n} {what}" for n, what in counts) + ")"


def _wait_for(batchers: list[Batcher], deadline: float) -> None:
    """Wait until each batcher has sent all or is failing, or *deadline* passes.

    At shutdown a failing receiver gets no more patience: what it has not
    taken is counted dropped at once, not after the SDK's retries. Each
    signal is judged on its own: a receiver that takes no logs (Jaeger) must
    not cost the spans still queued.
    """
    while True:
        pending = [b for b in batchers if b.running and not b.struggling()]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return
        pending[0].wait(min(left, 0.05))


def _stop_all(sdk_exporters: list[Any], until: float) -> None:
    """Shut the SDK exporters down together, waiting for them until *until*.

    Shutting one down ends a send of it that is still retrying. Some SDK
    versions first wait for the export in progress: such a one is left to
    finish in its own daemon thread.
    """
    threads = [
        threading.Thread(
            target=_stop, args=(sdk,), name="mptrace-otlp-stop", daemon=True
        )
        for sdk in sdk_exporters
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))


def _stop(sdk: Any) -> None:
    try:
        sdk.shutdown()
    except Exception:  # its connection is going away with the process anyway
        pass
