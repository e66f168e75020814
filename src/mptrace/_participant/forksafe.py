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

import os
import threading
import time
import weakref
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


def end_thread(thread: threading.Thread, timeout: float = 5.0) -> None:
    """Join *thread*, then wait until the kernel has let its OS thread go."""
    if thread is threading.current_thread():
        return
    thread.join(timeout)
    native_id = thread.native_id
    if native_id is None:
        return
    path = f"/proc/self/task/{native_id}"
    deadline = time.monotonic() + 1.0
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.0002)
