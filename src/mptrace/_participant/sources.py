"""Sources: native objects into events, in the process that made them.

Each adapter takes what a library hands it and returns a plain event
(``_schema.events``), which the participant sends on::

    logging.getLogger(...).info ──▶ FunnelHandler.prepare ─┐
    structlog processors ──▶ StructlogForwarder ───────────┤
    span.end() ──▶ _participant.FunnelSpanProcessor ───────┼──▶ Participant.send
    _lifecycle (created ... exited) ───────────────────────┘

Nothing live leaves an adapter: the message is formatted, extras and
attributes are made plain, an exception becomes its formatted traceback.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Callable
from typing import Any

from mptrace._participant.plain import (
    exc_info_to_exception,
    exception_dict,
    plain,
    safe_repr,
    safe_str,
)
from mptrace._schema import events as _events
from mptrace._schema.events import LOG_KEYS, Event

Send = Callable[[Event], None]

# Attributes every LogRecord has; anything else on a record came from extra=.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_BASE_LEN = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_LEVEL_NAMES = {n: n.lower() for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
#: What structlog calls a level (a method's name, or ``level=`` set by a processor).
_LEVELS = frozenset(_events.LEVEL_RANKS) | {
    "exception",
    "critical_exception",
    "warn",
    "fatal",
    "msg",
    "log",
}


def process_name() -> str:
    """This process's name, as ``multiprocessing.current_process()`` says."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return "MainProcess"
    try:
        return mp.current_process().name  # type: ignore[no-any-return]
    except Exception:  # pragma: no cover - interpreter shutting down
        return "?"


def _message(record: logging.LogRecord) -> str:
    try:
        return safe_str(record.getMessage())
    except Exception as exc:
        return (
            f"<unformattable message {safe_repr(record.msg)} with args "
            f"{safe_repr(record.args)}: {type(exc).__name__}: {safe_str(exc)}>"
        )


def merge_fields(event: Event, fields: dict[str, Any]) -> None:
    """Add the program's *fields*; a name mptrace uses gets a trailing ``_``."""
    for key, value in fields.items():
        if key in LOG_KEYS:
            key = key + "_"
        event[key] = plain(value)


# -- stdlib logging -----------------------------------------------------------


class FunnelHandler(logging.handlers.QueueHandler):
    """A ``QueueHandler`` whose queue is this process's participant.

    ``prepare`` turns the record into a plain log event (message formatted,
    extras copied as plain values, the exception formatted with its chain),
    so no live object ever crosses; ``enqueue`` sends it synchronously.
    """

    def __init__(self, send: Send) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.send = send

    def prepare(self, record: logging.LogRecord) -> Event:
        # The keys of _events.log_event, written out: this runs on every call.
        event = {
            "kind": "log",
            "ts": int(record.created * 1_000_000_000),
            "level": _LEVEL_NAMES.get(record.levelname) or record.levelname.lower(),
            "logger": record.name,
            "event": _message(record),
            "process": record.processName or "?",
        }
        if record.args:  # the message differs from its template: send both
            event["template"] = safe_str(record.msg)
        fields = record.__dict__
        if len(fields) > _BASE_LEN:  # something beyond a plain record's attributes
            extras = fields.keys() - _RECORD_ATTRS
            if extras:
                merge_fields(event, {k: fields[k] for k in sorted(extras)})
        if record.exc_info:
            exc = exc_info_to_exception(record.exc_info)
            if exc is not None:
                event["exc"] = exception_dict(exc)
        elif record.exc_text:
            event["exc"] = {"type": "", "message": "", "traceback": record.exc_text}
        if record.stack_info:
            event["stack"] = safe_str(record.stack_info)
        return event

    def enqueue(self, record: Any) -> None:
        self.send(record)


# -- structlog ----------------------------------------------------------------


class StructlogForwarder:
    """The last structlog processor: the event dict as a plain log event.

    It returns ``((event,), {})`` so that structlog calls the wrapped
    :class:`FunnelLogger` with the finished dict.
    """

    __slots__ = ()

    def __call__(
        self, logger: Any, method_name: str, event_dict: dict[str, Any]
    ) -> tuple[tuple[Event], dict[str, Any]]:
        level = event_dict.pop("level", None)
        if type(level) is not str or level.lower() not in _LEVELS:
            if level is not None:  # the program's own field called "level"
                event_dict["level"] = level
            level = method_name
        level = level.lower()
        if level in ("exception", "critical_exception"):
            level = "error"
        if level == "warn":
            level = "warning"
        exc_info = event_dict.pop("exc_info", None)
        if method_name == "exception" and exc_info is None:
            exc_info = True
        name = getattr(logger, "name", None) or event_dict.pop("logger", None) or ""
        event = _events.log_event(
            level, name, safe_str(event_dict.pop("event", "")), process_name()
        )
        if event_dict:
            merge_fields(event, event_dict)
        exc = exc_info_to_exception(exc_info)
        if exc is not None:
            event["exc"] = exception_dict(exc)
        return (event,), {}


def _funnel_method(level: str) -> Callable[..., None]:
    def method(self: FunnelLogger, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            event = args[0]
            if "kind" in event:  # finished by StructlogForwarder
                self.send(event)
                return
        # A renderer of the program's ran last (a structlog.configure() that
        # kept this logger): send its output as the message, never raise.
        parts = [safe_str(a) for a in args]
        parts += [f"{k}={safe_repr(v)}" for k, v in kwargs.items()]
        self.send(_events.log_event(level, self.name, " ".join(parts), process_name()))

    method.__name__ = level
    return method


class FunnelLogger:
    """What structlog wraps: every method sends the finished event."""

    __slots__ = ("name", "send")

    def __init__(self, name: str, send: Send) -> None:
        self.name = name
        self.send = send

    msg = log = info = _funnel_method("info")
    debug = _funnel_method("debug")
    warning = warn = _funnel_method("warning")
    error = exception = _funnel_method("error")
    critical = fatal = _funnel_method("critical")


class FunnelLoggerFactory:
    """structlog ``logger_factory``: ``get_logger(name)`` → :class:`FunnelLogger`."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    def __call__(self, name: str | None = None, *args: Any) -> FunnelLogger:
        return FunnelLogger(name or "", self.send)
