"""The child of the lock-wait tests: importable under spawn and forkserver."""

from __future__ import annotations


def waiter(held, never, free, ready) -> None:
    """Wait on *held* (the parent holds it 0.2 s after *ready*), time out
    twice on the Event *never*, take *free* uncontended, in a with block and
    by a bare acquire() (which is never timed)."""
    ready.set()
    with held:
        pass
    assert never.wait(0.05) is False
    assert never.wait(0.05) is False
    for _ in range(10):
        with free:
            pass
        free.acquire()
        free.release()
