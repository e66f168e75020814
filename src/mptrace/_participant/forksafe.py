"""No thread of mptrace's alive when the program forks.

Python 3.12+ warns when a multi-threaded process forks, and a thread's locks
held at that moment stay held for ever in the child. Each of mptrace's
threads in a program (the exit monitor, the console relay) registers here: a
before-fork hook ends it (its OS thread too, which CPython's warning counts)
and :func:`resume_all` starts it again once the fork has returned, when the
next child is watched. Not in the fork's after-in-parent hook: CPython
counts threads for its warning after running that hook.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol


class Pausable(Protocol):
    def pause(self) -> None: ...
    def resume(self) -> None: ...


_registered: weakref.WeakSet[Pausable] = weakref.WeakSet()
_hooked = False


def register(obj: Pausable) -> None:
    global _hooked
    if not _hooked:
        _hooked = True
        os.register_at_fork(before=_before_fork, after_in_child=_after_in_child)
    _registered.add(obj)


def unregister(obj: Pausable) -> None:
    _registered.discard(obj)


def resume_all() -> None:
    for obj in list(_registered):
        obj.resume()


def _before_fork() -> None:
    for obj in list(_registered):
        obj.pause()


def _after_in_child() -> None:
    # What is registered is the parent's: its threads did not cross the fork.
    _registered.clear()


class GuestThread:
    """A thread of mptrace's own, out of the program's sight.

    Started with ``_thread``, not ``threading``: it is not in the program's
    ``threading.enumerate()``, ``active_count()`` or ``_dangling``, and a
    program (or its test suite) that counts, limits or mocks the threads it
    starts (``threading._start_joinable_thread``) meets only its own.
    """

    def __init__(self, target: Callable[[], None]) -> None:
        self.native_id: int | None = None
        self.ident: int | None = None
        self._target: Callable[[], None] | None = target
        self._done = _thread.allocate_lock()
        self._done.acquire()
        try:
            _thread.start_new_thread(self._run, ())
        except BaseException:
            self._done.release()
            raise

    def _run(self) -> None:
        self.ident = _thread.get_ident()
        self.native_id = threading.get_native_id()
        try:
            target, self._target = self._target, None
            if target is not None:
                target()
        finally:
            _forget_dummy(self.ident)
            self._done.release()

    def is_alive(self) -> bool:
        return self._done.locked()

    def join(self, timeout: float | None = None) -> None:
        if self.ident == _thread.get_ident():
            return
        if self._done.acquire(timeout=-1 if timeout is None else timeout):
            self._done.release()


def _forget_dummy(ident: int) -> None:
    """Drop the ``_DummyThread`` a ``current_thread()`` in this thread made.

    Logging asks for the thread's name; before 3.12 the dummy stays in
    ``threading.enumerate()`` for ever, a thread the program never started.
    """
    try:
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            found = threading._active.get(ident)  # type: ignore[attr-defined]
            if isinstance(found, threading._DummyThread):
                del threading._active[ident]  # type: ignore[attr-defined]
    except Exception:  # private names of threading: gone in some version
        pass


def end_thread(thread: threading.Thread | GuestThread, timeout: float = 5.0) -> None:
    """Join *thread*, then wait until the kernel has let its OS thread go."""
    if thread.ident == threading.get_ident():
        return
    thread.join(timeout)
    native_id = thread.native_id
    if native_id is None:
        return
    path = f"/proc/self/task/{native_id}"
    deadline = time.monotonic() + 1.0
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.0002)
