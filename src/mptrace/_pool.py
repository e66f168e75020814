"""Drop-ins for ``multiprocessing.Pool``, ``ProcessPoolExecutor`` and ``get_context``.

Same signatures as the stdlib. Their workers join the session (they are
started through mptrace's contexts), and with tracing on::

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

``get_context(method)`` gives a context whose ``Process`` participates
(``_process._Participating``) and whose ``Pool`` is the pool here. The start
method is never set globally: it is the context's, as in the stdlib.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process as cfp
import functools
import multiprocessing.context as mpc
import multiprocessing.pool
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from . import _tracing
from ._lifecycle import state_of
from ._process import _Participating
from ._tracing import end_span, qualname, session_tracer


def _participating(context: Any) -> Any:
    """mptrace's context for the start method of *context* (None: the default)."""
    if context is None:
        return get_context()
    if getattr(type(context), "__module__", "").startswith("mptrace."):
        return context
    return get_context(context.get_start_method())


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
        except multiprocessing.TimeoutError:
            raise
        except BaseException as exc:
            self._end(exc)
            raise

    __next__ = next

    def __del__(self) -> None:
        # Dropped before the end: the span ends with the iterator.
        self._end(None)


def _start_span(tracer: Any, name: str, func: Any, **attributes: Any) -> Any:
    return tracer.start_span(
        f"{name} {qualname(func)}",
        attributes={
            "mptrace.span": "submit",
            "code.function.name": qualname(func),
            **attributes,
        },
    )


class Pool(multiprocessing.pool.Pool):
    """``multiprocessing.Pool`` whose workers and tasks are traced.

    ``context=`` may be a stdlib or an mptrace context (its start method is
    used); the default is the default start method.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
    ) -> None:
        # Workers started later (maxtasksperchild, a worker that died) are
        # started by the pool's own thread: they take the context of now.
        carrier = _tracing.carrier() if session_tracer() is not None else None
        self.Process = functools.partial(_pool_worker, carrier)  # type: ignore[method-assign]
        self._mptrace_open: list[_SpanEnd] = []  # spans that terminate() ends
        super().__init__(
            processes, initializer, initargs, maxtasksperchild, _participating(context)
        )

    def _track(self, end: _SpanEnd) -> _SpanEnd:
        self._mptrace_open = [e for e in self._mptrace_open if not e._done]
        self._mptrace_open.append(end)
        return end

    def terminate(self) -> None:
        for end in self._mptrace_open:
            end(None)
        super().terminate()

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mapper: Callable[..., Any],
        chunksize: int | None = None,
        callback: Callable[..., Any] | None = None,
        error_callback: Callable[..., Any] | None = None,
    ) -> Any:
        tracer = session_tracer()
        if tracer is None:
            return super()._map_async(  # type: ignore[misc]
                func, iterable, mapper, chunksize, callback, error_callback
            )
        name = (
            "Pool.starmap"
            if mapper is multiprocessing.pool.starmapstar  # type: ignore[attr-defined]
            else "Pool.map"
        )
        end = self._track(_SpanEnd(_start_span(tracer, name, func)))
        chunk_call = _tracing.ChunkCall(
            mapper, _tracing.carrier(end.span), f"task {qualname(func)}"
        )
        try:
            result = super()._map_async(  # type: ignore[misc]
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

    def _imap(
        self,
        method: Callable[..., Any],
        name: str,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None,
    ) -> Any:
        tracer = session_tracer()
        if tracer is None:
            return method(func, iterable, chunksize)
        end = self._track(_SpanEnd(_start_span(tracer, name, func)))
        try:
            inner = method(
                _tracing.TaskCall(func, _tracing.carrier(end.span)), iterable, chunksize
            )
        except BaseException as exc:
            end(exc)
            raise
        return _EndingIterator(inner, end)

    def imap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = 1,
    ) -> Any:
        return self._imap(super().imap, "Pool.imap", func, iterable, chunksize)

    def imap_unordered(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = 1,
    ) -> Any:
        return self._imap(
            super().imap_unordered, "Pool.imap_unordered", func, iterable, chunksize
        )

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},
        callback: Callable[..., Any] | None = None,
        error_callback: Callable[..., Any] | None = None,
    ) -> Any:
        if session_tracer() is not None:
            func = _tracing.TaskCall(func, _tracing.carrier())
        return super().apply_async(func, args, kwds, callback, error_callback)


def _pool_worker(
    carrier: dict[str, str] | None, ctx: Any, *args: Any, **kwds: Any
) -> Any:
    process = ctx.Process(*args, **kwds)
    state_of(process).parent_carrier = carrier
    return process


class ProcessPoolExecutor(cfp.ProcessPoolExecutor):
    """``concurrent.futures.ProcessPoolExecutor`` whose workers and tasks are traced.

    ``mp_context=`` may be a stdlib or an mptrace context; the default is
    the default start method.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            max_workers, _participating(mp_context), initializer, initargs, **kwargs
        )

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        # map() submits partial(_process_chunk, TaskCall(...)): already traced per item.
        is_map_chunk = (
            isinstance(fn, functools.partial) and fn.func is cfp._process_chunk
        )
        if not is_map_chunk and session_tracer() is not None:
            fn = _tracing.TaskCall(fn, _tracing.carrier())
        return super().submit(fn, *args, **kwargs)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        **kwargs: Any,
    ) -> Iterator[Any]:
        tracer = session_tracer()
        if tracer is None:
            return super().map(
                fn, *iterables, timeout=timeout, chunksize=chunksize, **kwargs
            )
        end = _SpanEnd(_start_span(tracer, "ProcessPoolExecutor.map", fn))
        task = _tracing.TaskCall(fn, _tracing.carrier(end.span))
        try:
            results = super().map(
                task, *iterables, timeout=timeout, chunksize=chunksize, **kwargs
            )
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


# -- contexts ---------------------------------------------------------------------


def _make(method: str) -> tuple[type, type] | None:
    base_ctx = mpc._concrete_contexts.get(method)  # type: ignore[attr-defined]
    if base_ctx is None:
        return None
    base_process = base_ctx.Process
    process_cls = type(
        base_process.__name__,
        (_Participating, base_process),
        {
            "__module__": __name__,
            "__qualname__": base_process.__name__,
            "__doc__": f"``{base_process.__name__}`` whose child joins the session.",
        },
    )

    def get_context(self: Any, method: str | None = None) -> Any:
        if method is None:
            return self
        return get_context(method)

    def pool(
        self: Any,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
    ) -> Any:
        return Pool(processes, initializer, initargs, maxtasksperchild, context=self)

    ctx_cls = type(
        type(base_ctx).__name__,
        (type(base_ctx),),
        {
            "__module__": __name__,
            "__qualname__": type(base_ctx).__name__,
            "Process": process_cls,
            "get_context": get_context,
            "Pool": pool,
            "__doc__": f"The {method!r} context, whose processes join the session.",
        },
    )
    return process_cls, ctx_cls


_contexts: dict[str, Any] = {}
for _method in ("fork", "spawn", "forkserver"):
    _made = _make(_method)
    if _made is not None:
        _process_cls, _ctx_cls = _made
        globals()[_process_cls.__name__] = _process_cls
        _contexts[_method] = _ctx_cls()
del _method, _made


def get_context(method: str | None = None) -> Any:
    """Like ``multiprocessing.get_context``; its processes join the session.

    ``get_context("spawn").Process(...)``, ``.Pool(...)`` and a
    ``ProcessPoolExecutor(mp_context=get_context(...))`` all participate.
    """
    if method is None:
        method = multiprocessing.get_context().get_start_method()
    try:
        return _contexts[method]
    except KeyError:
        valid = ", ".join(repr(m) for m in _contexts)
        raise ValueError(
            f"Cannot find context for {method!r}; valid start methods here are {valid}."
        ) from None
