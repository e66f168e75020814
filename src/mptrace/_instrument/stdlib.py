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
    multiprocessing.synchronize           SemLock, Condition, Event, Barrier: long
                                          waits recorded (``waits``)

Each replacement hands the saved original to the same function the drop-ins
use (``process.on_*``, ``tasks``), and passes straight through for a
drop-in (which does it itself), a ``ThreadPool``, or a process with no
session. A spawn or forkserver child is a fresh interpreter: the process
object it unpickles carries a marker whose unpickling instruments that
interpreter before ``_bootstrap`` runs, so the child joins and its own
children do too. :func:`uninstrument` puts every original back.
"""

from __future__ import annotations

import functools
import multiprocessing.process
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from mptrace._instrument import engines_dask as _dask
from mptrace._instrument import engines_joblib as _joblib
from mptrace._instrument import ipc as _ipc
from mptrace._instrument import process as _process
from mptrace._instrument import subprocesses as _subprocesses
from mptrace._instrument import tasks as _tasks
from mptrace._instrument import waits as _waits
from mptrace._instrument.process import _Participating
from mptrace._participant import frames as _frames
from mptrace._participant import hooks as _hooks
from mptrace._participant import participant as _participant

_lock = threading.Lock()


def _new_lock() -> None:
    """A forked child's lock is free, whatever another thread of the parent
    held at the fork (an import patched under it)."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock)
#: (class, attribute) → the original, while instrumented (_INHERITED: the
#: class had none of its own, a base class's was wrapped).
_saved: dict[tuple[type, str], Any] = {}
_INHERITED = object()
_active = False
#: Queues and pipes are patched too (trace_ipc()).
_ipc_on = False


def instrument(ipc: bool = False) -> None:
    """Make the stdlib's processes, pools and executors participate. Idempotent.

    ``mptrace.init()`` calls it unless given ``instrument=False``; a process
    started in a session then joins it, and with tracing on its pool and
    executor tasks are spans, exactly as with mptrace's drop-ins. *ipc*:
    queues and pipes too (:func:`trace_ipc`).
    """
    global _active
    with _lock:
        first, _active = not _active, True
    # multiprocessing.pool and concurrent.futures are patched when the program
    # imports them (most never import the second), not imported here.
    for module in _REPLACEMENTS if first else ():
        if not module.endswith(_ipc.MODULES):  # those: trace_ipc()
            _hooks.when_imported(module, _patch)
    if ipc:
        trace_ipc()  # takes the lock itself


def trace_ipc() -> None:
    """Make queue and pipe items carry their sender's span too: called where
    the session's config says so (``MPTRACE_TRACE_IPC``), once this process
    has it: the owner at init(), a child once it has joined. Idempotent;
    nothing while the stdlib is not instrumented."""
    global _ipc_on
    with _lock:
        if not _active or _ipc_on:
            return
        _ipc_on = True
    _ipc.start()
    for module in _REPLACEMENTS:
        if module.endswith(_ipc.MODULES):
            _hooks.when_imported(module, _patch)


#: Modules whose replacements take mptrace's frames out of the program's
#: tracebacks themselves, with no call around them: they run on every lock
#: and every item. The others go through ``_frames.hiding``.
_HIDE_THEIR_OWN = (".synchronize", *_ipc.MODULES)


def _patch(module: ModuleType) -> None:
    with _lock:
        if not _active:
            return
        for class_name, name, make in _REPLACEMENTS[module.__name__]:
            cls = getattr(module, class_name)
            if (cls, name) in _saved:
                continue
            original = cls.__dict__.get(name, _INHERITED)
            _saved[(cls, name)] = original
            if original is _INHERITED:
                original = getattr(cls, name)
            replacement = make(original)
            if not module.__name__.endswith(_HIDE_THEIR_OWN):
                replacement = _frames.hiding(replacement)
            setattr(cls, name, functools.wraps(original)(replacement))


def uninstrument() -> None:
    """Put back every method :func:`instrument` replaced. Idempotent."""
    global _active, _ipc_on
    with _lock:
        _active = _ipc_on = False
        for (cls, name), original in _saved.items():
            if original is _INHERITED:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        _saved.clear()
    _ipc.stop()
    for module in _REPLACEMENTS:
        _hooks.forget(module, _patch)


def instrumented() -> bool:
    """True while the stdlib is instrumented in this process."""
    return _active


def _drop_in(obj: Any) -> bool:
    """mptrace's own Pool or ProcessPoolExecutor, which does its part itself."""
    return getattr(type(obj), "_mptrace_drop_in", False)


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


def _lock_state(state: tuple[Any, ...], kind: str, place: str) -> Any:
    """A lock's state, unpickled: a spawn or forkserver child that unpickles
    its process object's arguments is instrumented first, as ``_Revive`` does
    a moment later, so the lock is rebuilt by the replaced methods."""
    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        instrument()
    return _waits.with_where(state, kind, place)


_waits.rebuild.append(_lock_state)


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
    """A stdlib (or ``multiprocess``) process pool: not a drop-in, not a
    ``ThreadPool``."""
    for module in _POOL_MODULES:
        std = getattr(sys.modules.get(module), "Pool", None)
        if std is not None and isinstance(pool, std):
            return not _drop_in(pool) and type(pool).Process is std.Process
    return False


_POOL_MODULES = ("multiprocessing.pool", "multiprocess.pool")


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
        if not _drop_in(self):
            fn = _tasks.submit_task(fn, self)
        return original(self, fn, *args, **kwargs)

    return submit


def _executor_map(original: Callable[..., Any]) -> Callable[..., Any]:
    def map(self: Any, fn: Any, *iterables: Any, **kwargs: Any) -> Any:
        bound = functools.partial(original, self)
        if _drop_in(self):
            return bound(fn, *iterables, **kwargs)
        return _tasks.executor_map(bound, fn, iterables, kwargs)

    return map


#: By module: (class, method, replacement maker).
_REPLACEMENTS: dict[str, list[tuple[str, str, Callable[[Any], Any]]]] = {
    "multiprocessing.process": [
        ("BaseProcess", "start", _start),
        ("BaseProcess", "join", _join),
        ("BaseProcess", "close", _close),
        ("BaseProcess", "terminate", _ending("terminate")),
        ("BaseProcess", "kill", _ending("kill")),
        ("BaseProcess", "_bootstrap", _bootstrap),
    ],
    "multiprocessing.pool": [
        ("Pool", "__init__", _pool_init),
        ("Pool", "terminate", _pool_terminate),
        ("Pool", "_map_async", _map_async),
        ("Pool", "imap", _imap("Pool.imap")),
        ("Pool", "imap_unordered", _imap("Pool.imap_unordered")),
        ("Pool", "apply_async", _apply_async),
    ],
    "concurrent.futures.process": [
        ("ProcessPoolExecutor", "submit", _submit),
        ("ProcessPoolExecutor", "map", _executor_map),
    ],
    "multiprocessing.synchronize": _waits.REPLACEMENTS,
    "multiprocessing.queues": _ipc.QUEUES,
    "multiprocessing.connection": _ipc.CONNECTIONS,
    "subprocess": _subprocesses.REPLACEMENTS,
    "joblib.parallel": _joblib.REPLACEMENTS,
    "distributed.client": _dask.CLIENT,
    "distributed.worker": _dask.WORKER,
}
# multiprocess (pathos's renamed copy of multiprocessing): the same patches.
for _name in ("process", "pool", "queues", "connection"):
    _REPLACEMENTS[f"multiprocess.{_name}"] = _REPLACEMENTS[f"multiprocessing.{_name}"]
