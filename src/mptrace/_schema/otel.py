"""Plain values into OpenTelemetry values, for sinks that hand events to the SDK.

``span_from_dict`` rebuilds a ``span`` event as the SDK's
``ReadableSpan`` with these helpers, and ``LogBuilder`` a ``log`` event as the
installed SDK's log record, ready for any ``SpanExporter`` / ``LogExporter``
(OTLP's among them). Values OTLP cannot hold are made to
fit: text with lone surrogates is escaped, integers beyond int64 and values
other than scalars or lists of one scalar type become text, and ``None`` is
left out. A dict that is not a well-formed event raises, and the caller
(``_listener.batch.Batcher``) counts it as dropped.
"""

from __future__ import annotations

import functools
import json
import platform
import socket
import time
from collections.abc import Callable
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEventObj
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from mptrace._schema.events import LOG_KEYS, Event, exception_attributes

#: Distinct resources (one per process, usually) kept converted at once.
RESOURCE_CACHE_SIZE = 1024


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


def text(value: Any) -> str:
    return _utf8(value if isinstance(value, str) else str(value))


def _optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


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


def trace_id(value: Any) -> int:
    return _id(value, 128)


def span_context(trace: int, span_id: Any) -> SpanContext:
    return SpanContext(trace, _id(span_id, 64), is_remote=False, trace_flags=_SAMPLED)


def span_kind(value: Any) -> SpanKind:
    return _KINDS.get(str(value), SpanKind.INTERNAL)


def status(code_name: Any, message: Any) -> Status:
    code = _CODES.get(str(code_name), StatusCode.UNSET)
    return Status(code, text(message) if code is StatusCode.ERROR and message else None)


def scope(name: Any, version: Any) -> InstrumentationScope:
    return _scope(text(name or ""), _optional_text(version))


timestamp = _ns
event_attributes = _event_attributes
otel_attributes = attributes


# -- log records ---------------------------------------------------------------

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
        from opentelemetry.sdk._logs import (  # type: ignore[attr-defined]
            LogData,
        )
        from opentelemetry.sdk._logs import (  # type: ignore[attr-defined]
            LogRecord as SdkLogRecord,
        )

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
    and the attributes are the extra fields plus ``mptrace.process.name``
    and, for an exception, ``exception.type``/``.message``/``.stacktrace``. A
    log made inside a span carries its trace and span ids.

    The resource is the process's, the same as its spans carry when mptrace
    made the provider (``_participant.participant.install_provider``): ``service.name``,
    ``service.instance.id`` (the run), ``process.pid``,
    ``process.parent_pid``, ``host.name``, ``process.runtime.*`` and the SDK's
    ``telemetry.sdk.*``; so a backend joins a process's logs to its spans.
    """

    def __init__(self, resources: _Resources) -> None:
        self.resources = resources
        self.make = _log_record_factory()
        self._host = {
            "host.name": socket.gethostname(),
            "process.runtime.name": platform.python_implementation(),
            "process.runtime.version": platform.python_version(),
        }
        self._by_process: dict[tuple[Any, Any, Any], Resource] = {}

    def resource(self, event: dict[str, Any]) -> Resource:
        key = (event.get("run"), event.get("pid"), event.get("ppid"))
        resource = self._by_process.get(key)
        if resource is None:
            values = {**self._host, "service.instance.id": key[0]}
            values.update({"process.pid": key[1], "process.parent_pid": key[2]})
            if len(self._by_process) >= RESOURCE_CACHE_SIZE:
                self._by_process.clear()
            plain = {k: v for k, v in values.items() if v is not None}
            resource = self._by_process[key] = self.resources.get(plain)
        return resource

    @staticmethod
    def _attributes(event: dict[str, Any]) -> dict[str, Any]:
        extra = attributes({k: v for k, v in event.items() if k not in LOG_KEYS})
        extra.update(
            attributes(
                {
                    "mptrace.process.name": event.get("process"),
                    "code.stacktrace": event.get("stack"),
                }
            )
        )
        extra.update(attributes(exception_attributes(event.get("exc"))))
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
            self.resource(event),
            _scope(text(event.get("logger") or ""), None),
            timestamp=_ns(ts) if ts is not None else None,
            observed_timestamp=time.time_ns(),
            severity_text=level.upper() or None,
            severity_number=_SEVERITIES.get(level.lower(), SeverityNumber.UNSPECIFIED),
            body=text(event.get("event", "")),
            attributes=self._attributes(event),
            **self._trace(event),
        )


def span_from_dict(event: Event, resources: _Resources) -> ReadableSpan:
    """The SDK's ``ReadableSpan`` for a ``span`` event, as an exporter takes it.

    Raises (KeyError, ValueError, TypeError, ...) for a dict that is not a
    well-formed span; a sink counts that as dropped.
    """
    tid = trace_id(event["trace_id"])
    parent_id = event.get("parent_span_id")
    info = event.get("scope") or {}
    return ReadableSpan(
        name=text(event["name"]),
        context=span_context(tid, event["span_id"]),
        parent=span_context(tid, parent_id) if parent_id else None,
        resource=resources.get(event.get("resource")),
        attributes=otel_attributes(event.get("attributes")),
        events=[
            SpanEventObj(
                text(e["name"]),
                event_attributes(e.get("attributes")),
                timestamp(e["ts"]),
            )
            for e in event.get("events") or ()
        ],
        links=[
            Link(
                span_context(trace_id(link["trace_id"]), link["span_id"]),
                event_attributes(link.get("attributes")),
            )
            for link in event.get("links") or ()
        ],
        kind=span_kind(event.get("span_kind")),
        status=status(event.get("status"), event.get("status_message")),
        start_time=timestamp(event["start_ns"]),
        end_time=timestamp(event["end_ns"]),
        instrumentation_scope=scope(info.get("name"), info.get("version")),
    )
