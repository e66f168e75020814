"""What one pool task cost its worker: CPU time and the change of RSS.

Read before and after every task, so each read must be cheap against a
task span (tens of µs). Measured on Linux, per call:

====================================  =======  ===================================
``time.process_time_ns()``            2.2 µs   the process's user+system, 1 ns
``os.times()``                        1.2 µs   the same, in 10 ms clock ticks
``resource.getrusage(RUSAGE_SELF)``   2.2 µs   the same, in µs
``os.pread`` of ``/proc/self/statm``  2.3 µs   RSS in pages, from an open fd
``open``/``read`` of it               15 µs
``psutil.Process().memory_info()``    19 µs
====================================  =======  ===================================

CPU is the whole process's (``process_time_ns``), not the thread's
(``thread_time``): a task's native thread pools (BLAS, a compressor) are the
task's cost, and a pool worker runs one task at a time, so the process's CPU
over a task is that task's, plus the little mptrace's own threads spend
meanwhile. ``os.times`` is cheaper but ticks in 10 ms, longer than most tasks.

RSS comes from ``/proc/self/statm`` through a descriptor opened once per
process (``/proc/self`` is resolved at open, so a forked worker opens its
own); where there is no ``/proc``, from psutil. A failed read leaves the
attribute out: telemetry never fails the task.
"""

from __future__ import annotations

import os
import time
from typing import Any

#: The attributes a task span gets (see docs/attributes.md).
CPU = "mptrace.task.cpu"
RSS_DELTA = "mptrace.task.memory.rss_delta"
RSS = "mptrace.task.memory.rss"

cpu_ns = time.process_time_ns
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm: list[int] = [-1, -1]  # [pid, fd] of this process's /proc/self/statm
_psutil: list[Any] = [None, None]  # [pid, psutil.Process] where /proc is missing


def rss() -> int | None:
    """This process's resident set size in bytes, or None when unknown."""
    pid = os.getpid()
    if _statm[0] != pid:
        if _statm[1] >= 0:  # the parent's, inherited over fork: ours to close
            try:
                os.close(_statm[1])
            except OSError:
                pass
        _statm[0] = pid
        try:
            _statm[1] = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _statm[1] = -1
    if _statm[1] >= 0:
        try:
            return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return None
    return _psutil_rss(pid)


def _psutil_rss(pid: int) -> int | None:
    try:
        if _psutil[0] != pid:
            import psutil

            _psutil[:] = [pid, psutil.Process(pid)]
        return int(_psutil[1].memory_info().rss)
    except Exception:  # psutil missing or refused: no RSS on this platform
        return None


def put(span: Any, cpu_before: int, rss_before: int | None) -> None:
    """Set the task's CPU seconds and RSS change on *span* (still open)."""
    try:
        # One set_attribute each: the SDK's set_attributes costs more (7.4
        # against 4.7 µs for three) for the dict it is given.
        span.set_attribute(CPU, (cpu_ns() - cpu_before) / 1e9)
        after = rss()
        if after is not None:
            span.set_attribute(RSS, after)
            if rss_before is not None:
                span.set_attribute(RSS_DELTA, after - rss_before)
    except Exception:  # a span that refuses attributes costs them, not the task
        pass
