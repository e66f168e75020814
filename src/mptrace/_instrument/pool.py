"""Drop-ins for ``multiprocessing.Pool``, ``ProcessPoolExecutor`` and ``get_context``.

Same signatures as the stdlib. Their workers join the session (they are
started through mptrace's contexts), and with tracing on their tasks are
spans (``tasks`` draws them; the same code serves the stdlib's own classes
once ``mptrace.instrument()`` has run).

``get_context(method)`` gives a context whose ``Process`` participates
(``process._Participating``) and whose ``Pool`` is the pool here. The start
method is never set globally: it is the context's, as in the stdlib.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process as cfp
import multiprocessing.context as mpc
import multiprocessing.pool
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mptrace._instrument import tasks as _tasks
from mptrace._instrument.process import _Participating


def _participating(context: Any) -> Any:
    """mptrace's context for the start method of *context* (None: the default)."""
    if context is None:
        return get_context()
    if getattr(type(context), "__module__", "").startswith("mptrace."):
        return context
    return get_context(context.get_start_method())


class Pool(multiprocessing.pool.Pool):
    """``multiprocessing.Pool`` whose workers and tasks are traced.

    ``context=`` may be a stdlib or an mptrace context (its start method is
    used); the default is the default start method.
    """

    _mptrace_drop_in = True  # instrumenting the stdlib leaves it to itself

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
    ) -> None:
        _tasks.worker_factory(self)
        super().__init__(
            processes, initializer, initargs, maxtasksperchild, _participating(context)
        )

    def terminate(self) -> None:
        _tasks.end_open_spans(self)
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
        return _tasks.map_async(
            self,
            super()._map_async,  # type: ignore[misc]
            func,
            iterable,
            mapper,
            chunksize,
            callback,
            error_callback,
        )

    def imap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = 1,
    ) -> Any:
        return _tasks.imap(self, super().imap, "Pool.imap", func, iterable, chunksize)

    def imap_unordered(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = 1,
    ) -> Any:
        return _tasks.imap(
            self,
            super().imap_unordered,
            "Pool.imap_unordered",
            func,
            iterable,
            chunksize,
        )

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},
        callback: Callable[..., Any] | None = None,
        error_callback: Callable[..., Any] | None = None,
    ) -> Any:
        return super().apply_async(
            _tasks.task(func), args, kwds, callback, error_callback
        )


class ProcessPoolExecutor(cfp.ProcessPoolExecutor):
    """``concurrent.futures.ProcessPoolExecutor`` whose workers and tasks are traced.

    ``mp_context=`` may be a stdlib or an mptrace context; the default is
    the default start method.
    """

    _mptrace_drop_in = True

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
        return super().submit(_tasks.submit_task(fn, self), *args, **kwargs)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        **kwargs: Any,
    ) -> Iterator[Any]:
        kwargs.update(timeout=timeout, chunksize=chunksize)
        return _tasks.executor_map(super().map, fn, iterables, kwargs)


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
