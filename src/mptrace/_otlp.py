"""OTLP export from the listener: spans and log records, batched, over gRPC or HTTP.

Events arrive as plain dicts (see docs/jsonl-schema.md). ``export()`` only
queues them, so the listener's loop never waits for the network; one
background thread per signal turns them back into OpenTelemetry SDK objects
(``ReadableSpan``, log records) and sends them through the SDK's own
``OTLPSpanExporter`` / ``OTLPLogExporter``::

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

import functools
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from ._config import ExporterSpec, ListenerConfig

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
#: Distinct resources (one per process, usually) kept converted at once.
RESOURCE_CACHE_SIZE = 1024

#: Said when log records cannot be sent: some receivers take spans only.
LOGS_HINT = "; if the receiver takes no logs (Jaeger), set OTEL_LOGS_EXPORTER=none"

GRPC_DEFAULT = "http://localhost:4317"
HTTP_DEFAULT = "http://localhost:4318"


def make_otlp_exporter(spec: ExporterSpec, cfg: ListenerConfig) -> OtlpExporter:
    """The listener's exporter for ``otlp`` (gRPC) and ``otlp+http`` specs."""
    return OtlpExporter(spec, cfg)


# -- plain values into OpenTelemetry values ------------------------------------

_INT64 = range(-(2**63), 2**63)
_UINT64_MAX = 2**64


def _utf8(text: str) -> str:
    """*text* with lone surrogates as ``\\udcXX`` escapes: protobuf takes UTF-8 only."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _json_text(value: Any) -> str:
    return _utf8(
        json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    )


def _scalar(value: Any) -> Any:
    """An attribute scalar (str, bool, int in int64, float), or None."""
    kind = type(value)
    if kind is str:
        return _utf8(value)
    if kind is bool or kind is float:
        return value
    if kind is int:
        return value if value in _INT64 else str(value)
    return None


def attribute_value(value: Any) -> Any:
    """*value* as an OpenTelemetry attribute value; None means "leave it out".

    Scalars stay as they are and lists of one scalar type become tuples;
    anything else (dicts, mixed lists) becomes its JSON text.
    """
    if value is None:
        return None
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, (list, tuple)):
        items = tuple(_scalar(v) for v in value)
        if len({type(v) for v in items}) <= 1 and None not in items:
            return items
    return _json_text(value)


def attributes(mapping: Any) -> dict[str, Any]:
    """A plain dict as OpenTelemetry attributes (None values are left out)."""
    if not isinstance(mapping, dict):
        return {}
    out = {}
    for key, value in mapping.items():
        converted = attribute_value(value)
        if converted is not None:
            out[_utf8(str(key))] = converted
    return out


def _event_attributes(mapping: Any) -> BoundedAttributes:
    """Attributes of a span event or link: SDKs before 1.26 read their ``dropped``."""
    return BoundedAttributes(attributes=attributes(mapping), immutable=True)


def _text(value: Any) -> str:
    return _utf8(value if isinstance(value, str) else str(value))


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _ns(value: Any) -> int:
    """A timestamp in nanoseconds; anything else is a malformed event."""
    if type(value) is not int or not 0 <= value < _UINT64_MAX:
        raise ValueError(f"not a timestamp in nanoseconds: {value!r}")
    return value


def _id(value: Any, bits: int) -> int:
    """A trace id (128 bits) or span id (64 bits) from its hex digits."""
    number = int(value, 16)
    if not 0 < number < 1 << bits:
        raise ValueError(f"not a valid {bits}-bit id: {value!r}")
    return number


class _Resources:
    """``Resource`` objects by their attributes: one per process, made once."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._cache: dict[str, Any] = {}

    def get(self, plain: Any) -> Resource:
        values = {**self.defaults, **attributes(plain)}
        key = json.dumps(values, sort_keys=True, default=str)
        resource = self._cache.get(key)
        if resource is None:
            if len(self._cache) >= RESOURCE_CACHE_SIZE:
                self._cache.clear()
            resource = self._cache[key] = Resource.create(values)
        return resource


@functools.lru_cache(maxsize=1024)
def _scope(name: str, version: str | None) -> InstrumentationScope:
    return InstrumentationScope(name, version)


# -- spans ---------------------------------------------------------------------


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {kind.name.lower(): kind for kind in SpanKind}
_CODES = {code.name.lower(): code for code in StatusCode}


def _context(trace_id: int, span_id: Any) -> SpanContext:
    return SpanContext(
        trace_id, _id(span_id, 64), is_remote=False, trace_flags=_SAMPLED
    )


class SpanBuilder:
    """Rebuilds an SDK ``ReadableSpan`` from a ``span`` event dict.

    Raises (KeyError, ValueError, TypeError, ...) for a dict that is not a
    well-formed span; the caller counts it as dropped.
    """

    def __init__(self, resources: _Resources) -> None:
        self.resources = resources

    def __call__(self, event: dict[str, Any]) -> ReadableSpan:
        trace_id = _id(event["trace_id"], 128)
        parent_id = event.get("parent_span_id")
        code = _CODES.get(str(event.get("status")), StatusCode.UNSET)
        message = event.get("status_message")
        scope = event.get("scope") or {}
        return ReadableSpan(
            name=_text(event["name"]),
            context=_context(trace_id, event["span_id"]),
            parent=_context(trace_id, parent_id) if parent_id else None,
            resource=self.resources.get(event.get("resource")),
            attributes=attributes(event.get("attributes")),
            events=[
                Event(
                    _text(e["name"]),
                    _event_attributes(e.get("attributes")),
                    _ns(e["ts"]),
                )
                for e in event.get("events") or ()
            ],
            links=[
                Link(
                    _context(_id(link["trace_id"], 128), link["span_id"]),
                    _event_attributes(link.get("attributes")),
                )
                for link in event.get("links") or ()
            ],
            kind=_KINDS.get(str(event.get("span_kind")), SpanKind.INTERNAL),
            status=Status(
                code, _text(message) if code is StatusCode.ERROR and message else None
            ),
            start_time=_ns(event["start_ns"]),
            end_time=_ns(event["end_ns"]),
            instrumentation_scope=_scope(
                _text(scope.get("name") or ""), _optional_text(scope.get("version"))
            ),
        )


# -- log records ---------------------------------------------------------------

#: Keys of a log event that are not extra fields.
_LOG_KEYS = frozenset(
    (
        "kind",
        "ts",
        "level",
        "logger",
        "event",
        "pid",
        "ppid",
        "process",
        "seq",
        "exc",
        "stack",
        "trace_id",
        "span_id",
    )
)
_SEVERITIES = {
    "trace": SeverityNumber.TRACE,
    "debug": SeverityNumber.DEBUG,
    "info": SeverityNumber.INFO,
    "warning": SeverityNumber.WARN,
    "warn": SeverityNumber.WARN,
    "error": SeverityNumber.ERROR,
    "exception": SeverityNumber.ERROR,
    "critical": SeverityNumber.FATAL,
    "fatal": SeverityNumber.FATAL,
}


def _log_record_factory() -> Callable[..., Any]:
    """``make(resource, scope, **fields)`` for the installed SDK's log data model.

    SDK 1.39 and later export ``ReadableLogRecord`` around the API's
    ``LogRecord``; earlier ones export ``LogData`` around the SDK's own.
    """
    try:
        from opentelemetry.sdk._logs import ReadableLogRecord
    except ImportError:  # SDK < 1.39
        from opentelemetry.sdk._logs import LogData
        from opentelemetry.sdk._logs import LogRecord as SdkLogRecord

        def make_old(resource: Any, scope: Any, **fields: Any) -> Any:
            # These encoders need ids even outside a span (0: none).
            fields.setdefault("trace_id", 0)
            fields.setdefault("span_id", 0)
            fields.setdefault("trace_flags", TraceFlags(TraceFlags.DEFAULT))
            return LogData(SdkLogRecord(resource=resource, **fields), scope)

        return make_old
    from opentelemetry._logs import LogRecord

    def make(resource: Any, scope: Any, **fields: Any) -> Any:
        return ReadableLogRecord(
            LogRecord(**fields), resource=resource, instrumentation_scope=scope
        )

    return make


class LogBuilder:
    """Turns a ``log`` event dict into an SDK log record for the OTLP exporter.

    Severity comes from ``level``, the body is the message, the instrumentation
    scope is the logger's name (as OpenTelemetry's own logging handler does),
    and the attributes are the extra fields plus the process
    (``process.pid``, ``process.parent_pid``, ``mptrace.process.name``) and,
    for an exception, ``exception.type``/``.message``/``.stacktrace``. A log
    made inside a span carries its trace and span ids.
    """

    def __init__(self, resources: _Resources) -> None:
        self.resource = resources.get({})
        self.make = _log_record_factory()

    @staticmethod
    def _attributes(event: dict[str, Any]) -> dict[str, Any]:
        extra = attributes({k: v for k, v in event.items() if k not in _LOG_KEYS})
        extra.update(
            attributes(
                {
                    "process.pid": event.get("pid"),
                    "process.parent_pid": event.get("ppid"),
                    "mptrace.process.name": event.get("process"),
                    "code.stacktrace": event.get("stack"),
                }
            )
        )
        exc = event.get("exc")
        if isinstance(exc, dict):
            extra.update(
                attributes(
                    {
                        "exception.type": exc.get("type"),
                        "exception.message": exc.get("message"),
                        "exception.stacktrace": exc.get("traceback"),
                    }
                )
            )
        return extra

    @staticmethod
    def _trace(event: dict[str, Any]) -> dict[str, Any]:
        """The ids of the span the log was made in, when it was made in one."""
        try:
            return {
                "trace_id": _id(event["trace_id"], 128),
                "span_id": _id(event["span_id"], 64),
                "trace_flags": _SAMPLED,
            }
        except (KeyError, TypeError, ValueError):
            return {}

    def __call__(self, event: dict[str, Any]) -> Any:
        level = str(event.get("level", ""))
        ts = event.get("ts")
        return self.make(
            self.resource,
            _scope(_text(event.get("logger") or ""), None),
            timestamp=_ns(ts) if ts is not None else None,
            observed_timestamp=time.time_ns(),
            severity_text=level.upper() or None,
            severity_number=_SEVERITIES.get(level.lower(), SeverityNumber.UNSPECIFIED),
            body=_text(event.get("event", "")),
            attributes=self._attributes(event),
            **self._trace(event),
        )


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
            self.last[record.thread or 0] = record.getMessage()
        except Exception:  # a complaint that cannot be formatted is not worth more
            pass

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
