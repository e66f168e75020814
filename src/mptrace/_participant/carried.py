"""An item that carries its sender's span across a queue or a pipe.

``_instrument.ipc`` wraps what the program puts on a ``multiprocessing``
queue or sends on a ``Connection`` in a :class:`Carried`. It pickles as a
call of :func:`arrived` with the item and the span's ids, so the item comes
out of ``pickle.loads`` as the very object the program put: whatever reads
it (``get``, ``recv``, a process with no session, a queue read by
``multiprocess``) receives it unchanged, and nothing on the reading side
needs patching. Where a session is on, :func:`arrived` hands the ids to the
hook ``_instrument.ipc`` set, which links the reader's span to the sender's.

This module imports nothing else: a reader that never imported mptrace
pays only for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: (trace_id, span_id, flags, kind) -> None, while a session links arrivals.
hook: Callable[[int, int, int, str], object] | None = None


class Carried:
    __slots__ = ("flags", "kind", "obj", "span_id", "trace_id")

    def __init__(self, obj: Any, trace_id: int, span_id: int, flags: int, kind: str):
        self.obj = obj
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (arrived, (self.obj, self.trace_id, self.span_id, self.flags, self.kind))


def arrived(obj: Any, trace_id: int, span_id: int, flags: int, kind: str) -> Any:
    """Unpickling a :class:`Carried`: note where it came from; the item."""
    on_arrival = hook
    if on_arrival is not None:
        try:
            on_arrival(trace_id, span_id, flags, kind)
        except Exception:  # telemetry never breaks the program's read
            pass
    return obj
