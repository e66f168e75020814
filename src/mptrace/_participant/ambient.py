"""The span of work a thread does when the context does not say.

An engine that runs a task in a thread of its own, having started the
task's span elsewhere (a Dask worker: its state machine, in the event loop,
sees a task start executing; a thread of its pool runs it), registers a
*finder* here: a function that returns the span of what the calling thread
runs, or None. Records logged in that thread carry the task span's ids,
and a span started there (``@mptrace.traced``) is its child, unless the
current span is one the task started itself (it began no earlier than the
task's): whatever the thread's context held before (the process's span, or
in a cluster of threads the span of the code that submitted) is older.
Without a finder, one list lookup a record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_NO_TIME = -1
#: [the finder, or None]
finder: list[Any] = [None]


def work_span(current: Any) -> Any:
    """The span the calling thread works in: *current* if the task started
    it (it began no earlier than the task's span), else the finder's."""
    find = finder[0]
    found = find() if find is not None else None
    if found is None:
        return current
    started = getattr(current, "start_time", None) or _NO_TIME
    return current if started >= (found.start_time or 0) else found


def set_finder(find: Callable[[], Any] | None) -> None:
    """Register *find* (one a process; None removes it)."""
    finder[0] = find
