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
from mptrace._participant import frames as _frames
from mptrace._participant import participant as _participant

#: The modules whose classes this replaces, under ``multiprocessing`` or
#: ``multiprocess``: only when the session's ``trace_ipc`` is on
#: (``MPTRACE_TRACE_IPC``), from ``_instrument.stdlib.trace_ipc()``.
MODULES = (".queues", ".connection")


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

_get_current_span = trace.get_current_span
_getframe = sys._getframe
Carried = _carried.Carried


class _Seen(threading.local):
    """What this thread last worked out, kept while the current span stays
    the same: most items are put and read in runs under one span."""

    def __init__(self) -> None:
        #: The span current at the last put, and what an item put in it
        #: carries: (trace_id, span_id, flags), or None (it goes as it came).
        self.put_span: Any = None
        self.put_ids: tuple[int, int, int] | None = None
        #: The span current at the last read; whether it is a span of the
        #: work; the senders' spans it already links to.
        self.read_span: Any = None
        self.read_work = False
        self.linked: set[tuple[int, int]] = set()
        #: Links that wait for the next span mptrace starts in this thread.
        self.pending: list[tuple[int, int, int, str]] = []


_seen = _Seen()


def _forget() -> None:
    """What the parent saw is not the child's: a forked child, or a new session."""
    global _seen
    _seen = _Seen()


os.register_at_fork(after_in_child=_forget)


def _ids(span: Any) -> tuple[int, int, int] | None:
    """What an item put in *span* carries: its ids if it is a recording span
    of the work (a task, an ``@traced`` call, a span of the program's; not
    the run's or a process's, which say nothing about an item)."""
    if not span.is_recording():
        return None  # no span, or a child's process span (its parent's)
    if (getattr(span, "attributes", None) or {}).get("mptrace.span") in _OUTER:
        return None
    part = _participant._current
    if part is None or not part.config.tracing:
        return None
    ctx = span.get_span_context()
    return ctx.trace_id, ctx.span_id, int(ctx.trace_flags)


def _carry(obj: Any, kind: str) -> Any:
    """*obj*, carrying the current span's ids if it is a span of the work and
    the program (not the machinery, two frames up) sent it. Anything else
    goes as it came: an item put outside such a span costs one look at the
    current span."""
    seen = _seen
    span = _get_current_span()
    if span is not seen.put_span:
        seen.put_ids = _ids(span)
        seen.put_span = span
    ids = seen.put_ids
    if ids is None or type(obj) is Carried:
        return obj
    caller = _getframe(2).f_globals.get("__name__") or ""
    if caller.startswith(_MACHINERY):
        return obj
    return Carried(obj, ids[0], ids[1], ids[2], kind)


def _arrival(trace_id: int, span_id: int, flags: int, kind: str) -> None:
    """An item sent in span *span_id* was read: the reader's span of the
    work links to it, once however many items of that span it reads."""
    if _participant._current is None:
        return
    seen = _seen
    span = _get_current_span()
    if span is not seen.read_span:
        seen.read_span = span
        seen.read_work = span.is_recording() and (
            (getattr(span, "attributes", None) or {}).get("mptrace.span") not in _OUTER
        )
        seen.linked = set()
    if seen.read_work:
        if (trace_id, span_id) not in seen.linked:
            seen.linked.add((trace_id, span_id))
            span.add_link(*_link(trace_id, span_id, flags, kind))
        return
    # Kept as plain values: most are never made into links (PENDING).
    pending = seen.pending
    if len(pending) >= PENDING:
        del pending[0]
    pending.append((trace_id, span_id, flags, kind))


def _link(trace_id: int, span_id: int, flags: int, kind: str) -> tuple[Any, Any]:
    return SpanContext(trace_id, span_id, True, TraceFlags(flags)), {
        "mptrace.link": kind
    }


def take_links() -> list[Any]:
    """The links waiting in this thread for the span about to start."""
    pending = _seen.pending
    if not pending:
        return []
    _seen.pending = []
    unique = dict.fromkeys(pending)  # one link a sender's span, in order
    return [trace.Link(*_link(*ids)) for ids in unique]


def start() -> None:
    """Arrivals are linked in this process (a session is on)."""
    _carried.hook = _arrival


def stop() -> None:
    _carried.hook = None
    _forget()


# -- the replacements --------------------------------------------------------------


def _carrying(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The replacement of a ``put`` or a ``send``: its item carries the span
    (every one of them names it ``obj``; the rest is passed as given)."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def put(self: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(self, _carry(obj, kind), *args, **kwargs)
            except BaseException as exc:  # a full queue's Ctrl-C: the program's
                _frames.hide(exc)
                raise

        return put

    return make


#: For ``_instrument.stdlib``: by module, (class, method, replacement maker).
QUEUES: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("Queue", "put", _carrying("queue")),
    ("JoinableQueue", "put", _carrying("queue")),
    ("SimpleQueue", "put", _carrying("queue")),
]
CONNECTIONS: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("_ConnectionBase", "send", _carrying("pipe"))
]
