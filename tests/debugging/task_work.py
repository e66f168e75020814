"""Pool task functions for the resource tests: importable under spawn."""

from __future__ import annotations

import time

MIB = 1024 * 1024
LEAK = 20 * MIB
#: Where ``leak`` keeps what it allocates: the worker's memory only grows.
_kept: list[bytes] = []


def leak(i: int) -> int:
    """Keep 20 MiB more, written (so resident), at every call."""
    _kept.append(bytes([i % 251 + 1]) * LEAK)
    return len(_kept)


def churn(i: int) -> int:
    """Allocate 20 MiB and let it go: no growth."""
    block = bytes([i % 251 + 1]) * LEAK
    return len(block)


def burn(seconds: float) -> int:
    """Spend about *seconds* of CPU in pure Python."""
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n
