"""Traced queues and pipes: a reader's span is linked to the span that sent.

What the program puts on a ``multiprocessing`` ``Queue``, ``JoinableQueue``
or ``SimpleQueue``, or sends on a ``Connection`` (``Pipe()``), travels with
the ids of the span current where it was put (``_participant.carried``): the
item the reader gets is the object that was put, not a wrapper. When it is
read, the reader's span gets a span link to the sender's, with
``mptrace.link`` saying how it came (``queue``, ``pipe``):

- the span current where it is read, when that is a span of the work
  (a pool task, an ``@traced`` call, a span of the program's);
- else (the reader's own process span, or the run's) the next span mptrace
  starts in that thread: the ``@traced`` call or the task that handles the
  item. At most :data:`PENDING` wait in a thread; the oldest go first.

A link, not a span of its own: a span per item would cost more than the
item's own trip, and a link is what OpenTelemetry's messaging conventions
give a consumer's work on a message it received. Traffic of
``multiprocessing`` itself (a pool's task and result queues, a manager's
connections), of ``concurrent.futures``, loky and mptrace is left alone:
only what the program's own code puts is carried.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags

from mptrace._participant import carried as _carried
from mptrace._participant import participant as _participant

#: The modules whose classes this replaces, under ``multiprocessing`` or
#: ``multiprocess``: only when ``MPTRACE_TRACE_IPC`` is on.
MODULES = (".queues", ".connection")


def wanted() -> bool:
    """``MPTRACE_TRACE_IPC`` is on (``_session.env`` checks its value)."""
    value = os.environ.get("MPTRACE_TRACE_IPC", "").strip().lower()
    return value in ("1", "true", "yes", "on")


#: Links that wait, per thread, for the next span mptrace starts there.
PENDING = 32
#: Callers whose traffic is the machinery's own, not the program's.
_MACHINERY = (
    "multiprocessing.",
    "multiprocess.",
    "concurrent.futures",
    "mptrace.",
    "loky.",
    "joblib.",
)
#: Spans that are not the work on an item: it waits for the next span.
_OUTER = frozenset({"run", "process"})

_local = threading.local()
_get_current_span = trace.get_current_span
_getframe = sys._getframe
Carried = _carried.Carried


def _carry(obj: Any, kind: str) -> Any:
    """*obj*, carrying the current span if it is a span of the work (a task,
    an ``@traced`` call, a span of the program's: not the run's or a
    process's, which say nothing about an item) and the program (not the
    machinery, two frames up) sent it. Anything else goes as it came: an
    item put outside such a span costs one look at the current span."""
    span = _get_current_span()
    if not span.is_recording() or type(obj) is Carried:
        return obj  # no span, or a child's process span (its parent's)
    if (getattr(span, "attributes", None) or {}).get("mptrace.span") in _OUTER:
        return obj
    part = _participant._current
    if part is None or not part.config.tracing:
        return obj
    caller = _getframe(2).f_globals.get("__name__") or ""
    if caller.startswith(_MACHINERY):
        return obj
    ctx = span.get_span_context()
    return Carried(obj, ctx.trace_id, ctx.span_id, ctx.trace_flags, kind)


def _arrival(trace_id: int, span_id: int, flags: int, kind: str) -> None:
    if _participant._current is None:
        return
    span = _get_current_span()
    if span.is_recording():
        role = (getattr(span, "attributes", None) or {}).get("mptrace.span")
        if role not in _OUTER:
            span.add_link(*_link(trace_id, span_id, flags, kind))
            return
    # Kept as plain values: most are never made into links (PENDING).
    pending = _local.__dict__.setdefault("pending", [])
    if len(pending) >= PENDING:
        del pending[0]
    pending.append((trace_id, span_id, flags, kind))


def _link(trace_id: int, span_id: int, flags: int, kind: str) -> tuple[Any, Any]:
    return SpanContext(trace_id, span_id, True, TraceFlags(flags)), {
        "mptrace.link": kind
    }


def take_links() -> list[Any]:
    """The links waiting in this thread for the span about to start."""
    pending = _local.__dict__.get("pending")
    if not pending:
        return []
    _local.pending = []
    return [trace.Link(*_link(*ids)) for ids in pending]


def start() -> None:
    """Arrivals are linked in this process (a session is on)."""
    _carried.hook = _arrival


def stop() -> None:
    _carried.hook = None


# -- the replacements --------------------------------------------------------------


def _queue_put(original: Callable[..., Any]) -> Callable[..., Any]:
    def put(self: Any, obj: Any, block: bool = True, timeout: Any = None) -> Any:
        return original(self, _carry(obj, "queue"), block, timeout)

    return put


def _simple_put(original: Callable[..., Any]) -> Callable[..., Any]:
    def put(self: Any, obj: Any) -> Any:
        return original(self, _carry(obj, "queue"))

    return put


def _send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: Any, obj: Any) -> Any:
        return original(self, _carry(obj, "pipe"))

    return send


#: For ``_instrument.stdlib``: by module, (class, method, replacement maker).
QUEUES: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("Queue", "put", _queue_put),
    ("JoinableQueue", "put", _queue_put),
    ("SimpleQueue", "put", _simple_put),
]
CONNECTIONS: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("_ConnectionBase", "send", _send)
]
