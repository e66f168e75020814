"""The child of the lock-wait tests: importable under spawn and forkserver."""

from __future__ import annotations


def waiter(held, kept, free, ready) -> None:
    """Wait on *held* (the parent holds it 0.2 s after *ready*), time out on
    *kept* (held until this child ends), take *free* uncontended."""
    ready.set()
    with held:
        pass
    assert kept.acquire(timeout=0.05) is False
    assert kept.acquire(timeout=0.05) is False
    for _ in range(10):
        free.acquire()
        free.release()
