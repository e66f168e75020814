"""A pool that makes no progress: the stacks of every process, once a stall.

Every ``Pool`` and ``ProcessPoolExecutor`` made in a session is watched from
the exit monitor's thread, at each sample (``sample_interval``), for as
long as its workers run: nothing is added to a task's path. A pool has
work outstanding while its result cache (the executor's pending items) is
not empty; it moves when anything in it changes: a result arrives, a map
has fewer chunks left, an ``imap`` iterator a further index. When work has
been outstanding and nothing has moved for ``stall_timeout`` seconds, one
``mptrace.pool`` warning says so and the listener is asked for a round of
stacks (reason ``stalled``, ``_listener.stacks``): the run's files then say
on which line each process waits. Once a stall: the next is told only after
the pool has moved again.

A pool whose every task simply runs longer than ``stall_timeout`` is told
as a stall too; its stacks show the tasks' lines, which is what a person
looks for then.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from typing import Any

from mptrace._schema import stacks as _stacks

_log = logging.getLogger("mptrace.pool")

#: The pools and executors made in this process, while they live.
_watched: weakref.WeakSet[Any] = weakref.WeakSet()
#: id(pool) → [what it looked like, since when, told already]
_seen: dict[int, list[Any]] = {}


def watch(pool: Any) -> None:
    """Watch *pool* (a ``Pool`` or a ``ProcessPoolExecutor``) for stalls."""
    try:
        _watched.add(pool)
    except TypeError:  # not weakly referenceable: not watched
        pass


def outstanding(pool: Any) -> tuple[int, tuple[float, ...]] | None:
    """(tasks outstanding, what changes when the pool moves); None: idle."""
    cache = getattr(pool, "_cache", None)
    if cache is not None:  # multiprocessing.pool.Pool
        jobs = list(cache.values())
        if not jobs:
            return None
        # Job ids only grow: a job done (and another given) changes their sum.
        ids = sum(k for k in list(cache) if type(k) is int)
        left = sum(getattr(job, "_number_left", 0) for job in jobs)
        ahead = sum(
            getattr(job, "_index", 0) + len(getattr(job, "_unsorted", ()))
            for job in jobs
        )
        return sum(_left(job) for job in jobs), (len(jobs), ids, left, ahead)
    pending = getattr(pool, "_pending_work_items", None)
    if pending is None or not pending or getattr(pool, "_broken", False):
        return None
    ids = sum(k for k in list(pending) if type(k) is int)
    return len(pending), (len(pending), ids)


def _left(job: Any) -> int:
    """The tasks (chunks) a job still waits for: a map's, an imap's, or 1."""
    left = getattr(job, "_number_left", None)
    if type(left) is int:
        return left
    length = getattr(job, "_length", None)
    if type(length) is int:
        return max(length - getattr(job, "_index", 0), 1)
    return 1


def check(stall_timeout: float, session_dir: str, now: float | None = None) -> None:
    """From the monitor's thread: tell each pool that stalled now, once."""
    if not stall_timeout or not session_dir:
        return
    now = time.monotonic() if now is None else now
    alive = set()
    for pool in list(_watched):
        key = id(pool)
        alive.add(key)
        try:
            found = outstanding(pool)
        except RuntimeError:  # its cache changed while read: it moves
            found = (1, (now,))
        if found is None:
            _seen.pop(key, None)
            continue
        count, looks = found
        seen = _seen.get(key)
        if seen is None or seen[0] != looks:
            _seen[key] = [looks, now, False]
        elif not seen[2] and now - seen[1] >= stall_timeout:
            seen[2] = True
            _tell(pool, count, now - seen[1], session_dir)
    for key in set(_seen) - alive:
        del _seen[key]


def _tell(pool: Any, count: int, still: float, session_dir: str) -> None:
    _log.warning(
        "%s made no progress for %.0f s with %d task%s outstanding; "
        "the stacks of every process are in the run's files (mptrace report)",
        type(pool).__name__,
        still,
        count,
        "" if count == 1 else "s",
    )
    try:
        _stacks.request(session_dir, _stacks.STALLED)
    except OSError:  # no process takes stacks: the warning is all there is
        pass


def _forget() -> None:  # a forked child: its parent's pools are not its own
    _watched.clear()
    _seen.clear()


os.register_at_fork(after_in_child=_forget)
