"""The sending side for log records: stdlib ``logging`` and structlog.

Both end in ``Stream.send`` with one plain dict per record::

    logging.getLogger(...).info ──▶ FunnelHandler.prepare ──┐
                                                           ├──▶ Stream.send
    mptrace.get_logger().info ──▶ structlog processors ──▶ forward ─┘
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from typing import Any

from ._plain import exc_info_to_exception, exception_dict, plain, safe_repr, safe_str
from ._stream import Stream, _process_name
from ._wire import EVENT_KEYS

# Attributes every LogRecord has; anything else on a record came from extra=.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
) | {"message", "asctime", "taskName"}

_LEVEL_NAMES = {n: n.lower() for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
_BASE_LEN = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))

#: Keys mptrace writes on every log event; a user field of the same name is
#: kept under the name with a trailing underscore.
CORE_KEYS = EVENT_KEYS | {"exc"}


def _message(record: logging.LogRecord) -> str:
    try:
        return safe_str(record.getMessage())
    except Exception as exc:
        return (
            f"<unformattable message {safe_repr(record.msg)} with args "
            f"{safe_repr(record.args)}: {type(exc).__name__}: {safe_str(exc)}>"
        )


def _merge_fields(event: dict[str, Any], fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if key in CORE_KEYS:
            key = key + "_"
        event[key] = plain(value)


class FunnelHandler(logging.handlers.QueueHandler):
    """A ``QueueHandler`` whose queue is this process's stream to the listener.

    ``prepare`` turns the record into a plain dict (message formatted, extras
    copied as plain values, the exception formatted with its chain), so no
    live object ever crosses; ``enqueue`` writes it synchronously.
    """

    def __init__(self, stream: Stream, trace_context: Any = None) -> None:
        super().__init__(stream)  # type: ignore[arg-type]
        self.stream = stream
        self.trace_context = trace_context

    def prepare(self, record: logging.LogRecord) -> dict[str, Any]:  # type: ignore[override]
        event: dict[str, Any] = {
            "kind": "log",
            "ts": int(record.created * 1_000_000_000),
            "level": _LEVEL_NAMES.get(record.levelname) or record.levelname.lower(),
            "logger": record.name,
            "event": _message(record),
            "process": record.processName or "?",
        }
        fields = record.__dict__
        if len(fields) > _BASE_LEN:  # something beyond a plain record's attributes
            extras = fields.keys() - _RECORD_ATTRS
            if extras:
                _merge_fields(event, {k: fields[k] for k in sorted(extras)})
        if record.exc_info:
            exc = exc_info_to_exception(record.exc_info)
            if exc is not None:
                event["exc"] = exception_dict(exc)
        elif record.exc_text:
            event["exc"] = {"type": "", "message": "", "traceback": record.exc_text}
        if record.stack_info:
            event["stack"] = safe_str(record.stack_info)
        if self.trace_context is not None:
            self.trace_context(event)
        return event

    def enqueue(self, record: Any) -> None:
        self.stream.send(record)


class StructlogForwarder:
    """The last structlog processor: hands the event dict to the stream.

    It returns ``((event,), {})`` so that structlog calls the wrapped
    :class:`FunnelLogger` with the finished dict.
    """

    __slots__ = ("trace_context",)

    def __init__(self, trace_context: Any = None) -> None:
        self.trace_context = trace_context

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        level = event_dict.pop("level", None) or method_name
        if level in ("exception", "critical_exception"):
            level = "error"
        if level == "warn":
            level = "warning"
        exc_info = event_dict.pop("exc_info", None)
        if method_name == "exception" and exc_info is None:
            exc_info = True
        event: dict[str, Any] = {
            "kind": "log",
            "ts": time.time_ns(),
            "level": level,
            "logger": getattr(logger, "name", None) or event_dict.pop("logger", None) or "",
            "event": safe_str(event_dict.pop("event", "")),
            "process": _process_name(),
        }
        if event_dict:
            _merge_fields(event, event_dict)
        exc = exc_info_to_exception(exc_info)
        if exc is not None:
            event["exc"] = exception_dict(exc)
        if self.trace_context is not None:
            self.trace_context(event)
        return (event,), {}


class FunnelLogger:
    """What structlog wraps: every method sends the finished dict."""

    __slots__ = ("name", "stream")

    def __init__(self, name: str, stream: Stream) -> None:
        self.name = name
        self.stream = stream

    def msg(self, event: dict[str, Any]) -> None:
        self.stream.send(event)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class FunnelLoggerFactory:
    """structlog ``logger_factory``: ``get_logger(name)`` → :class:`FunnelLogger`."""

    __slots__ = ("stream",)

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def __call__(self, name: str | None = None, *args: Any) -> FunnelLogger:
        return FunnelLogger(name or "", self.stream)
