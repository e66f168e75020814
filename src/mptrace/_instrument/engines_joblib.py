"""joblib's ``Parallel``: a task span per batch, in whichever worker ran it.

``Parallel`` hands its backend batches (``BatchedCalls``: a list of
``(func, args, kwargs)``), not calls: a batch is the unit a worker gets at
once, as a chunk is for ``Pool.map``, and joblib sizes it itself
(``batch_size="auto"`` grows it until a batch takes a fraction of a second,
so that tiny calls do not pay a round trip each). So a batch is one span,
``task <function>`` with ``mptrace.task.items`` calls, as a map's chunk is;
a span per call would put back, on tiny calls, the per-call cost the
batching exists to remove. ``batch_size=1`` gives a span per call.

The span's parent is the span current when ``Parallel.__call__`` ran (else
the run's span): joblib dispatches later batches from its callback thread,
where nothing is current, so the context is taken at the call and rides
with each batch. ``BatchedCalls`` pickles itself from its own
``__reduce__``, so nothing can ride on it: :class:`TracedBatch` wraps it,
and pickles both. This serves every backend alike: loky (whose workers join
the session as multiprocessing's do, their processes being
``BaseProcess``), ``multiprocessing`` (whose pool would otherwise wrap the
batch in a span of its own, named after joblib's wrapper and parented by
whatever thread dispatched it: ``tasks.traced_by_caller`` turns that off
while the batch is handed over), threads (a span per batch in the thread
that ran it) and the sequential backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from mptrace._instrument import tasks as _tasks
from mptrace._instrument import tracing as _tracing
from mptrace._instrument.tracing import qualname
from mptrace._participant import frames as _frames


class TracedBatch:
    """A joblib batch with the context of the ``Parallel`` call that made it."""

    __slots__ = ("batch", "carrier", "function")

    def __init__(self, batch: Any, carrier: dict[str, str], function: str) -> None:
        self.batch = batch
        self.carrier = carrier
        self.function = function

    def __reduce__(self) -> tuple[Any, ...]:
        return (TracedBatch, (self.batch, self.carrier, self.function))

    def __len__(self) -> int:
        return len(self.batch)

    @_frames.hiding  # the batch's errors: joblib reports them
    def __call__(self) -> Any:
        name = f"task {self.function}"
        return _tracing._run_task(self._run, (), self.carrier, name, len(self.batch))

    def _run(self) -> Any:
        trace.get_current_span().set_attribute("code.function.name", self.function)
        return self.batch()


def _function_of(batch: Any) -> str:
    """The function a batch calls; joblib lets one ``Parallel`` mix several."""
    items = getattr(batch, "items", None)
    if not items:
        return "joblib.BatchedCalls"
    first = items[0][0]
    # By identity first: a batch of tiny calls holds thousands of one function.
    if all(item[0] is first for item in items):
        return qualname(first)
    names = {qualname(item[0]) for item in items}
    return names.pop() if len(names) == 1 else "joblib.BatchedCalls"


def _call(original: Callable[..., Any]) -> Callable[..., Any]:
    def __call__(self: Any, iterable: Any) -> Any:
        carrier = _tracing.carrier() if _tracing.session_tracer() else None
        self.__dict__["_mptrace_carrier"] = carrier
        return original(self, iterable)

    return __call__


#: joblib's own backends, which run the batch as the callable it is; another
#: (dask's reads ``batch.items``) is left its batch as joblib made it.
_BACKENDS = frozenset(
    ("LokyBackend", "MultiprocessingBackend", "ThreadingBackend", "SequentialBackend")
)


def _ours(backend: Any) -> bool:
    cls = type(backend)
    return cls.__module__ == "joblib._parallel_backends" and cls.__name__ in _BACKENDS


def _dispatch(original: Callable[..., Any]) -> Callable[..., Any]:
    def _dispatch(self: Any, batch: Any) -> Any:
        carrier = self.__dict__.get("_mptrace_carrier")
        if carrier is None or not _ours(getattr(self, "_backend", None)):
            return original(self, batch)
        with _tasks.traced_by_caller():
            return original(self, TracedBatch(batch, carrier, _function_of(batch)))

    return _dispatch


#: For ``stdlib``'s table: (class, method, replacement maker).
REPLACEMENTS: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("Parallel", "__call__", _call),
    ("Parallel", "_dispatch", _dispatch),
]
