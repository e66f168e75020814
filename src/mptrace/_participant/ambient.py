"""The span of work a thread does when the context does not say.

An engine that runs a task in a thread of its own, having started the
task's span elsewhere (a Dask worker: its state machine, in the event loop,
sees a task start executing; a thread of its pool runs it), registers a
*finder* here: a function that returns the span of what the calling thread
runs, or None. Where the current span is none, or only this process's own
span, records logged in that thread carry the task span's ids, and a span
started there (``@mptrace.traced``) is its child; a span the task started
itself stays current. Without a finder, one list lookup a record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: [the finder or None, the span id of this process's own span]
finder: list[Any] = [None, 0]


def work_span(current: Any) -> Any:
    """The span the calling thread works in: *current*, or the finder's."""
    find = finder[0]
    if find is None:
        return current
    ctx = current.get_span_context()
    if ctx.is_valid and ctx.span_id != finder[1]:
        return current  # a span of the task's own
    found = find()
    return found if found is not None else current


def set_finder(find: Callable[[], Any] | None, own_span_id: int = 0) -> None:
    """Register *find* (one a process; None removes it); *own_span_id* is
    this process's span, which a task's span stands in for."""
    finder[:] = [find, own_span_id]
