"""The schema: what an event is, on the wire and in a JSON-lines file.

Every event is a plain dict whose ``kind`` says which of these it is::

    log        a stdlib LogRecord or a structlog event        (LogEvent)
    span       an ended OpenTelemetry span                    (SpanEvent)
    lifecycle  one transition of one child process            (LifecycleEvent)
    hello      a stream's first frame: who is writing         (listener only)
    shutdown   the owner asks the listener to drain and stop  (listener only)
    flush      the owner asks for every sink to be flushed     (listener only)
    stacks     every thread's stack of one process             (``_schema.stacks``)

Each crosses a process as one frame, written by the sender::

    ┌ length: u32 ┬ kind: u8 ┬ flags: u8 ┬ seq: u32 ┬ the event as JSON (UTF-8) ┐

``flags`` carries what the listener routes on, so it never searches the JSON:
a log event's level rank, and whether a span is a child's process span. The
JSON is the very line the JSON-lines sink writes. This module is what a
reader of those files imports too (docs/jsonl-schema.md describes them). The
way back from a ``span`` event to the SDK's span is ``otel.span_from_dict``:
this module knows nothing of OpenTelemetry's SDK.
"""

from __future__ import annotations

import signal
import struct
import time
from typing import TYPE_CHECKING, Any, Final, TypedDict

from mptrace._schema.encoding import to_json as to_json  # the encoder lives apart

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

#: An event as it travels: a plain dict (the TypedDicts below name its keys).
Event = dict[str, Any]

# -- kinds and keys --------------------------------------------------------------

LOG, SPAN, LIFECYCLE, HELLO, SHUTDOWN, FLUSH, STACKS = (
    "log",
    "span",
    "lifecycle",
    "hello",
    "shutdown",
    "flush",
    "stacks",
)
KINDS: Final = ("other", LOG, SPAN, LIFECYCLE, HELLO, SHUTDOWN, FLUSH, STACKS)
KIND_CODES: Final = {name: code for code, name in enumerate(KINDS)}

#: Keys mptrace writes on every event a process sends.
EVENT_KEYS: Final = frozenset(
    ("kind", "ts", "level", "logger", "event", "pid", "ppid", "process", "seq", "run")
)
#: A log event's own keys; an ``extra=`` field or structlog key of the same name
#: is kept with a trailing underscore.
LOG_KEYS: Final = EVENT_KEYS | {
    "exc", "stack", "trace_id", "span_id", "echoed", "template"
}  # fmt: skip
SPAN_KEYS: Final = frozenset(
    (
        "name", "trace_id", "span_id", "parent_span_id", "span_kind", "start_ns",
        "end_ns", "status", "status_message", "attributes", "events", "links",
        "scope", "resource",
    )
)  # fmt: skip
LIFECYCLE_KEYS: Final = frozenset(
    ("transition", "target_pid", "target_name", "start_method")
)
#: What mptrace writes itself, as opposed to fields, attributes and values
#: from the program (which redaction checks).
STRUCTURE_KEYS: Final = (
    LOG_KEYS | SPAN_KEYS - {"attributes", "events", "links"} | LIFECYCLE_KEYS
)


class LogEvent(TypedDict, total=False):
    """``kind: "log"``; any other key is a field of the record."""

    kind: str
    ts: int
    level: str
    logger: str
    event: str
    process: str
    pid: int
    ppid: int
    seq: int
    run: str
    exc: ExceptionInfo
    stack: str
    trace_id: str
    span_id: str


class ExceptionInfo(TypedDict):
    """An exception as plain data (``_participant.plain.exception_dict``)."""

    type: str
    message: str
    traceback: str


class SpanEvent(TypedDict, total=False):
    """``kind: "span"``: an ended span (see :func:`span_to_dict`)."""

    kind: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    span_kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    scope: dict[str, Any]
    resource: dict[str, Any]
    process: str


class LifecycleEvent(TypedDict, total=False):
    """``kind: "lifecycle"``: one transition of the child ``target_pid``."""

    kind: str
    ts: int
    transition: str
    target_pid: int | None
    target_name: str
    start_method: str
    process: str
    trace_id: str
    span_id: str


# -- levels and flags ---------------------------------------------------------

#: A log level's rank in the frame's flags (0: a level of the program's own).
LEVEL_RANKS: Final = {
    "debug": 1,
    "info": 2,
    "warning": 3,
    "error": 4,
    "critical": 5,
}
ERROR_RANK: Final = LEVEL_RANKS["error"]
#: The stdlib's number for every level name an event may carry.
LEVEL_NUMBERS: Final = {
    "notset": 0, "debug": 10, "info": 20, "warning": 30, "warn": 30,
    "error": 40, "exception": 40, "critical": 50, "fatal": 50,
}  # fmt: skip
#: In a span frame's flags: the span is a child's process span.
PROCESS_SPAN: Final = 1
#: In a span frame's flags: the span has started, not ended (no ``end_ns``).
#: The listener keeps it, writes nothing, and ends it as cut short if the
#: process's stream ends before the span does.
OPEN_SPAN: Final = 2


def flags_of(kind: str, event: Event) -> int:
    """The routing flags of *event*: level rank (log) or process-span bit (span)."""
    if kind == LOG:
        return LEVEL_RANKS.get(event.get("level"), 0)  # type: ignore[arg-type]
    if kind == SPAN:
        if event.get("end_ns", 0) is None:
            return OPEN_SPAN
        attributes = event.get("attributes")
        if type(attributes) is dict and attributes.get("mptrace.span") == "process":
            return PROCESS_SPAN
    return 0


# -- frames -------------------------------------------------------------------

HEADER: Final = struct.Struct("!I")  # the length of what follows
PREFIX: Final = struct.Struct("!BBI")  # kind, flags, sequence number
_FRAME_HEAD: Final = struct.Struct("!IBBI")  # HEADER and PREFIX in one
#: A frame larger than this is refused by the listener (a corrupt stream).
MAX_FRAME: Final = 64 * 1024 * 1024


def encode(event: Event) -> bytes:
    """*event* as one frame, header included; ``event["seq"]`` is an int."""
    kind = event.get("kind", "other")
    body = to_json(event)
    if kind == LOG:  # the common case, without a call
        flags = LEVEL_RANKS.get(event.get("level"), 0)  # type: ignore[arg-type]
    else:
        flags = flags_of(kind, event)
    return (
        _FRAME_HEAD.pack(
            len(body) + PREFIX.size,
            KIND_CODES.get(kind, 0),
            flags,
            event.get("seq", 0) & 0xFFFFFFFF,
        )
        + body
    )


# -- builders -----------------------------------------------------------------


def log_event(
    level: str, logger: str, message: str, process: str, ts: int | None = None
) -> Event:
    """A log event's own keys; the sender stamps pid, ppid, seq and run."""
    return {
        "kind": LOG,
        "ts": time.time_ns() if ts is None else ts,
        "level": level,
        "logger": logger,
        "event": message,
        "process": process,
    }


def lifecycle_event(
    transition: str,
    target_pid: int | None,
    target_name: str,
    start_method: str,
    process: str,
    ts: int | None = None,
) -> Event:
    """One transition of the child *target_pid* (see docs/jsonl-schema.md)."""
    return {
        "kind": LIFECYCLE,
        "ts": time.time_ns() if ts is None else ts,
        "transition": transition,
        "target_pid": target_pid,
        "target_name": target_name,
        "start_method": start_method,
        "process": process,
    }


def exception_attributes(exc: Any) -> dict[str, str]:
    """OpenTelemetry's ``exception.*`` attributes of an ``exc`` dict."""
    if not isinstance(exc, dict):
        return {}
    return {
        "exception.type": str(exc.get("type", "")),
        "exception.message": str(exc.get("message", "")),
        "exception.stacktrace": str(exc.get("traceback", "")),
    }


def signal_name(code: object) -> str | None:
    """``SIGKILL`` for an exit code of -9; None for a normal exit or no code."""
    if type(code) is not int or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


# -- the span codec -----------------------------------------------------------


def span_to_dict(
    span: ReadableSpan, resource: dict[str, Any], process: str, plain: Any
) -> Event:
    """An ended SDK span as a ``span`` event; *plain* makes a value plain."""
    ctx = span.context
    if ctx is None:
        raise ValueError("a span without a context")
    parent = span.parent
    scope = span.instrumentation_scope
    status = span.status

    def attrs(mapping: Any) -> dict[str, Any]:
        return {k: plain(v) for k, v in (mapping or {}).items()}

    return {
        "kind": SPAN,
        "name": span.name,
        "trace_id": hex_id(ctx.trace_id, 32),
        "span_id": hex_id(ctx.span_id, 16),
        "parent_span_id": hex_id(parent.span_id, 16) if parent is not None else None,
        "span_kind": span.kind.name.lower(),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": status.status_code.name.lower(),
        "status_message": status.description,
        "attributes": attrs(span.attributes),
        "events": [
            {"name": e.name, "ts": e.timestamp, "attributes": attrs(e.attributes)}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": hex_id(link.context.trace_id, 32),
                "span_id": hex_id(link.context.span_id, 16),
                "attributes": attrs(link.attributes),
            }
            for link in span.links
        ],
        "scope": {
            "name": scope.name if scope else "",
            "version": scope.version if scope else None,
        },
        "resource": resource,
        "process": process,
    }
