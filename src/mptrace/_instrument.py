"""Instrumenting the stdlib: plain multiprocessing participates like the drop-ins.

:func:`instrument` replaces a few methods on the stdlib's own classes, in
place, so that every object of them takes part, whoever made it and
whenever its module was imported (a library that did ``from multiprocessing
import Process`` long before ``init()`` included)::

    multiprocessing.process.BaseProcess   start join close terminate kill _bootstrap
        (every context's Process: fork, spawn, forkserver; Pool and executor
        workers; the server process of every Manager and BaseManager)
    multiprocessing.pool.Pool             __init__ _map_async imap imap_unordered
                                          apply_async terminate
    concurrent.futures.ProcessPoolExecutor  submit map

Each replacement hands the saved original to the same function the drop-ins
use (``_process.on_*``, ``_tasks``), and passes straight through for a
drop-in (which does it itself), a ``ThreadPool``, or a process with no
session. A spawn or forkserver child is a fresh interpreter: the process
object it unpickles carries a marker whose unpickling instruments that
interpreter before ``_bootstrap`` runs, so the child joins and its own
children do too. :func:`uninstrument` puts every original back.
"""

from __future__ import annotations

import concurrent.futures.process as cfp
import functools
import multiprocessing.pool
import multiprocessing.process
import threading
from collections.abc import Callable
from typing import Any

from . import _participant, _process, _tasks
from ._pool import Pool as _DropInPool
from ._pool import ProcessPoolExecutor as _DropInExecutor
from ._process import _Participating

_lock = threading.Lock()
#: (class, attribute) → the original, while instrumented.
_saved: dict[tuple[type, str], Any] = {}


def instrument() -> None:
    """Make the stdlib's processes, pools and executors participate. Idempotent.

    ``mptrace.init()`` calls it unless given ``instrument=False``; a process
    started in a session then joins it, and with tracing on its pool and
    executor tasks are spans, exactly as with mptrace's drop-ins.
    """
    with _lock:
        if _saved:
            return
        for (cls, name), make in _REPLACEMENTS.items():
            original = cls.__dict__[name]
            _saved[(cls, name)] = original
            setattr(cls, name, functools.wraps(original)(make(original)))


def uninstrument() -> None:
    """Put back every method :func:`instrument` replaced. Idempotent."""
    with _lock:
        for (cls, name), original in _saved.items():
            setattr(cls, name, original)
        _saved.clear()


def instrumented() -> bool:
    """True while the stdlib is instrumented in this process."""
    return bool(_saved)


class _Revive:
    """Rides in a started process's ``__dict__``; unpickling it instruments.

    A spawn or forkserver child unpickles its process object before calling
    its ``_bootstrap``, so by then the replaced methods are in place.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_revive, ())


def _revive() -> _Revive:
    instrument()
    return _REVIVE


_REVIVE = _Revive()


# -- the replacements --------------------------------------------------------------


def _ours(process: Any) -> bool:
    """True when mptrace leaves *process* alone here: a drop-in, or no session."""
    return isinstance(process, _Participating) or _participant.current() is None


def _start(original: Callable[..., None]) -> Callable[..., None]:
    def start(self: Any) -> None:
        if _ours(self):
            return original(self)
        self.__dict__["_mptrace_revive"] = _REVIVE
        _process.on_start(self, functools.partial(original, self))

    return start


def _join(original: Callable[..., None]) -> Callable[..., None]:
    def join(self: Any, timeout: float | None = None) -> None:
        if isinstance(self, _Participating):
            return original(self, timeout)
        _process.on_join(self, functools.partial(original, self), timeout)

    return join


def _close(original: Callable[..., None]) -> Callable[..., None]:
    def close(self: Any) -> None:
        if isinstance(self, _Participating):
            return original(self)
        _process.on_close(self, functools.partial(original, self))

    return close


def _ending(how: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def make(original: Callable[..., None]) -> Callable[..., None]:
        def end(self: Any) -> None:
            if isinstance(self, _Participating):
                return original(self)
            _process.on_end(self, functools.partial(original, self), how)

        return end

    return make


def _bootstrap(original: Callable[..., int]) -> Callable[..., int]:
    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> int:
        if isinstance(self, _Participating):
            return original(self, *args, **kwargs)
        bound = functools.partial(original, self)
        return _process.on_bootstrap(self, bound, *args, **kwargs)

    return _bootstrap


def _process_pool(pool: Any) -> bool:
    """A stdlib process pool: not a drop-in, not a ``ThreadPool``."""
    return (
        not isinstance(pool, _DropInPool)
        and type(pool).Process is multiprocessing.pool.Pool.Process
    )


def _pool_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _process_pool(self):
            _tasks.worker_factory(self)
        original(self, *args, **kwargs)

    return __init__


def _pool_terminate(original: Callable[..., None]) -> Callable[..., None]:
    def terminate(self: Any) -> None:
        if _process_pool(self):
            _tasks.end_open_spans(self)
        original(self)

    return terminate


def _map_async(original: Callable[..., Any]) -> Callable[..., Any]:
    def _map_async(self: Any, *args: Any) -> Any:
        if not _process_pool(self):
            return original(self, *args)
        return _tasks.map_async(self, functools.partial(original, self), *args)

    return _map_async


def _imap(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def imap(self: Any, func: Any, iterable: Any, chunksize: int | None = 1) -> Any:
            if not _process_pool(self):
                return original(self, func, iterable, chunksize)
            bound = functools.partial(original, self)
            return _tasks.imap(self, bound, name, func, iterable, chunksize)

        return imap

    return make


def _apply_async(original: Callable[..., Any]) -> Callable[..., Any]:
    def apply_async(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        if _process_pool(self):
            func = _tasks.task(func)
        return original(self, func, *args, **kwargs)

    return apply_async


def _submit(original: Callable[..., Any]) -> Callable[..., Any]:
    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, _DropInExecutor):
            fn = _tasks.submit_task(fn)
        return original(self, fn, *args, **kwargs)

    return submit


def _executor_map(original: Callable[..., Any]) -> Callable[..., Any]:
    def map(self: Any, fn: Any, *iterables: Any, **kwargs: Any) -> Any:
        bound = functools.partial(original, self)
        if isinstance(self, _DropInExecutor):
            return bound(fn, *iterables, **kwargs)
        return _tasks.executor_map(bound, fn, iterables, kwargs)

    return map


_Base = multiprocessing.process.BaseProcess
_StdPool = multiprocessing.pool.Pool
_REPLACEMENTS: dict[tuple[type, str], Callable[[Any], Any]] = {
    (_Base, "start"): _start,
    (_Base, "join"): _join,
    (_Base, "close"): _close,
    (_Base, "terminate"): _ending("terminate"),
    (_Base, "kill"): _ending("kill"),
    (_Base, "_bootstrap"): _bootstrap,
    (_StdPool, "__init__"): _pool_init,
    (_StdPool, "terminate"): _pool_terminate,
    (_StdPool, "_map_async"): _map_async,
    (_StdPool, "imap"): _imap("Pool.imap"),
    (_StdPool, "imap_unordered"): _imap("Pool.imap_unordered"),
    (_StdPool, "apply_async"): _apply_async,
    (cfp.ProcessPoolExecutor, "submit"): _submit,
    (cfp.ProcessPoolExecutor, "map"): _executor_map,
}
