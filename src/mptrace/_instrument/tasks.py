"""Task spans of a pool or an executor, around the stdlib's own methods.

Each function here takes the stdlib method it stands in for (bound to the
pool or executor) as ``original``, so the same code serves mptrace's
drop-ins (``pool``, which pass ``super()``'s method) and the stdlib's own
classes once instrumented (``stdlib``, which pass the saved original)::

    Pool.map / starmap / imap / imap_unordered ── a span in the parent
        └── "task <function>" per task, in whichever worker ran it, with a
            link to that worker's process span: for map and starmap a task
            is a chunk of ``chunksize`` items (the pool's own unit of work,
            the one ``maxtasksperchild`` counts); for imap (chunksize 1 by
            default), apply and submit, one item
    Pool.apply / apply_async, Executor.submit ── "task <function>" under the
        span current at submission

The traceparent rides with every task, not with the worker, so a reused
worker parents each task under the span that submitted it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import multiprocessing
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

from mptrace._instrument import stall as _stall
from mptrace._instrument import tracing as _tracing
from mptrace._instrument.lifecycle import state_of
from mptrace._instrument.tracing import end_span, qualname, session_tracer
from mptrace._participant import frames as _frames


class _SpanEnd:
    """Ends a span once, from whichever of several paths gets there first."""

    __slots__ = ("_done", "_lock", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        self._lock = threading.Lock()
        self._done = False

    def __call__(self, exc: BaseException | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        end_span(self.span, exc)

    def on_result(self, callback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        def done(value: Any) -> Any:
            self(None)
            return callback(value) if callback is not None else None

        return done

    def on_error(self, callback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        def failed(exc: Any) -> Any:
            self(exc if isinstance(exc, BaseException) else None)
            return callback(exc) if callback is not None else None

        return failed


class _EndingIterator:
    """An ``IMapIterator`` that ends its span when it runs out or fails."""

    def __init__(self, inner: Any, end: _SpanEnd) -> None:
        self._inner = inner
        self._end = end

    def __iter__(self) -> _EndingIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        try:
            return (
                self._inner.next(timeout) if timeout is not None else next(self._inner)
            )
        except StopIteration:
            self._end(None)
            raise
        except multiprocessing.TimeoutError as exc:
            _frames.hide(exc)
            raise
        except BaseException as exc:  # the task's, or Ctrl-C while it waits
            self._end(exc)
            _frames.hide(exc)
            raise

    __next__ = next

    def __del__(self) -> None:
        # Dropped before the end: the span ends with the iterator.
        self._end(None)


def _start_span(tracer: Any, name: str, func: Any, **attributes: Any) -> Any:
    return tracer.start_span(
        f"{name} {qualname(func)}",
        context=_tracing.parent_context(),
        attributes={
            "mptrace.span": "submit",
            "code.function.name": qualname(func),
            **attributes,
        },
    )


# -- pools -------------------------------------------------------------------------


def worker_factory(pool: Any) -> None:
    """Make the workers of *pool* children of the span current now.

    Workers started later (maxtasksperchild, a worker that died) are started
    by the pool's own thread: they take the context of the pool's creation.
    """
    carrier = _tracing.carrier() if session_tracer() is not None else None
    pool.Process = functools.partial(_pool_worker, carrier)
    _stall.watch(pool)


def _pool_worker(
    carrier: dict[str, str] | None, ctx: Any, *args: Any, **kwds: Any
) -> Any:
    process = ctx.Process(*args, **kwds)
    if carrier is not None:
        state_of(process).parent_carrier = carrier
    return process


def _track(pool: Any, end: _SpanEnd) -> _SpanEnd:
    """Remember *end* so that ``terminate()`` ends its span."""
    open_ends = [e for e in pool.__dict__.get("_mptrace_open", ()) if not e._done]
    open_ends.append(end)
    pool._mptrace_open = open_ends
    return end


def end_open_spans(pool: Any) -> None:
    """``terminate()``: the spans of what the pool was still doing end now."""
    for end in pool.__dict__.get("_mptrace_open", ()):
        end(None)


def map_async(
    pool: Any,
    original: Callable[..., Any],
    func: Callable[..., Any],
    iterable: Iterable[Any],
    mapper: Callable[..., Any],
    chunksize: int | None = None,
    callback: Callable[..., Any] | None = None,
    error_callback: Callable[..., Any] | None = None,
) -> Any:
    """``Pool._map_async``, behind map, map_async, starmap and starmap_async."""
    tracer = session_tracer()
    if tracer is None:
        return original(func, iterable, mapper, chunksize, callback, error_callback)
    # By name: multiprocessing's and multiprocess's pools have one each.
    starmap = getattr(mapper, "__name__", "") == "starmapstar"
    name = "Pool.starmap" if starmap else "Pool.map"
    if not isinstance(iterable, Sized):
        iterable = list(iterable)  # as the pool itself does, to count the items
    end = _track(pool, _SpanEnd(_start_span(tracer, name, func)))
    chunk_call = _tracing.ChunkCall(
        mapper, _tracing.carrier(end.span), f"task {qualname(func)}", len(iterable)
    )
    try:
        result = original(
            func,
            iterable,
            chunk_call,
            chunksize,
            end.on_result(callback),
            end.on_error(error_callback),
        )
    except BaseException as exc:
        end(exc)
        raise
    if result.ready():  # an empty iterable: no callback comes
        end(None)
    return result


def imap(
    pool: Any,
    original: Callable[..., Any],
    name: str,
    func: Callable[..., Any],
    iterable: Iterable[Any],
    chunksize: int | None,
) -> Any:
    """``Pool.imap`` and ``imap_unordered``: the span ends with the iterator."""
    tracer = session_tracer()
    if tracer is None:
        return original(func, iterable, chunksize)
    end = _track(pool, _SpanEnd(_start_span(tracer, name, func)))
    try:
        total = len(iterable) if isinstance(iterable, Sized) else 0  # 0: unknown
        call = _tracing.TaskCall(func, _tracing.carrier(end.span), of=total)
        inner = original(call, iterable, chunksize)
    except BaseException as exc:
        end(exc)
        raise
    return _EndingIterator(inner, end)


def task(func: Callable[..., Any]) -> Callable[..., Any]:
    """*func* as a traced task of the span current now (``apply_async``)."""
    if session_tracer() is None or _caller_traces.get():
        return func
    return _tracing.TaskCall(func, _tracing.carrier())


_caller_traces = contextvars.ContextVar("mptrace_caller_traces", default=False)


@contextlib.contextmanager
def traced_by_caller() -> Iterator[None]:
    """Tasks submitted inside are traced by the caller (joblib's ``Parallel``,
    which hands the pool its batches already wrapped): ``task`` leaves them."""
    token = _caller_traces.set(True)
    try:
        yield
    finally:
        _caller_traces.reset(token)


# -- executors ---------------------------------------------------------------------


def submit_task(fn: Callable[..., Any], executor: Any) -> Callable[..., Any]:
    """What *executor*'s ``submit`` sends: *fn* as a traced task. The
    executor is watched for stalls (``stall``) from its first task on.

    ``map()`` submits ``partial(_process_chunk, TaskCall(...))``, already
    traced per item; that passes as it is.
    """
    # The executor's own chunking: its module is imported, since it made fn.
    _stall.watch(executor)
    chunk = sys.modules["concurrent.futures.process"]._process_chunk
    if isinstance(fn, functools.partial) and fn.func is chunk:
        return fn
    return task(fn)


def executor_map(
    original: Callable[..., Iterator[Any]],
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    kwargs: dict[str, Any],
) -> Iterator[Any]:
    """``ProcessPoolExecutor.map``: one span, ended when the results run out."""
    tracer = session_tracer()
    if tracer is None:
        return original(fn, *iterables, **kwargs)
    # Counted only when every iterable says its length: one may be endless
    # (itertools.repeat beside a list), and 0 means "not known".
    sized = [len(it) for it in iterables if isinstance(it, Sized)]
    total = min(sized) if sized and len(sized) == len(iterables) else 0
    end = _SpanEnd(_start_span(tracer, "ProcessPoolExecutor.map", fn))
    call = _tracing.TaskCall(fn, _tracing.carrier(end.span), of=total)
    try:
        results = original(call, *iterables, **kwargs)
    except BaseException as exc:
        end(exc)
        raise
    return _ending_generator(results, end)


def _ending_generator(results: Iterator[Any], end: _SpanEnd) -> Iterator[Any]:
    try:
        yield from results
    except BaseException as exc:
        end(exc)
        raise
    end(None)
