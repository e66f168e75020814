"""What pool tasks cost: the workers whose memory grows, the costliest tasks.

Each task span carries its worker's CPU over the task
(``mptrace.task.cpu``) and the worker's RSS change (``mptrace.task.memory.
rss_delta``). A worker that leaks keeps what each task allocated, so its
deltas are positive task after task; one that only warms up (imports, a
cache that fills once) grows in its first tasks and then stays. A worker is
named as growing when, over at least MIN_TASKS tasks, most of its tasks
(GROWING_SHARE) grew it and the growth adds up to GROWTH_MIN or more.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from mptrace._cli.reader import Event

#: The costliest tasks kept, by CPU.
COSTLIEST = 5
#: A worker is "growing" past all three: tasks seen, share that grew, growth.
MIN_TASKS = 3
GROWING_SHARE = 0.6
GROWTH_MIN = 10 * 1024 * 1024
#: A task "grew" its worker when its RSS rose by more than this: a page or
#: two from another thread of the worker during the task is not the task's.
GREW_MIN = 256 * 1024
CPU = "mptrace.task.cpu"
RSS_DELTA = "mptrace.task.memory.rss_delta"
RSS = "mptrace.task.memory.rss"


class Worker:
    """One worker's tasks as RSS saw them."""

    __slots__ = ("cpu_s", "grew", "growth", "last_rss", "name", "pid", "tasks")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.name = "?"
        self.tasks = self.grew = self.growth = 0
        self.cpu_s = 0.0
        self.last_rss: int | None = None

    def growing(self) -> bool:
        """Memory that grows across most of its tasks, adding up to GROWTH_MIN."""
        return (
            self.tasks >= MIN_TASKS
            and self.grew >= GROWING_SHARE * self.tasks
            and self.growth >= GROWTH_MIN
        )


class Resources:
    """Per-worker RSS growth and the costliest tasks, from task spans."""

    def __init__(self) -> None:
        self.workers: dict[int, Worker] = {}
        self.costliest: list[tuple[float, int, Event]] = []  # a heap, least first
        self._order = itertools.count()

    def add(self, event: Event, attributes: dict[str, Any]) -> None:
        """Take one task span."""
        cpu = attributes.get(CPU)
        delta = attributes.get(RSS_DELTA)
        pid = event.get("pid")
        if type(pid) is int and (type(delta) is int or isinstance(cpu, float)):
            worker = self.workers.get(pid) or self.workers.setdefault(pid, Worker(pid))
            if isinstance(event.get("process"), str):
                worker.name = event["process"]
            if type(delta) is int:
                worker.tasks += 1
                worker.grew += delta > GREW_MIN
                worker.growth += delta
            if isinstance(cpu, (int, float)):
                worker.cpu_s += cpu
            if type(attributes.get(RSS)) is int:
                worker.last_rss = attributes[RSS]
        if isinstance(cpu, (int, float)):
            entry = (float(cpu), next(self._order), event)
            if len(self.costliest) < COSTLIEST:
                heapq.heappush(self.costliest, entry)
            elif entry[0] > self.costliest[0][0]:
                heapq.heapreplace(self.costliest, entry)

    def growing(self) -> list[Worker]:
        """The workers whose memory grows, the most growth first."""
        found = [w for w in self.workers.values() if w.growing()]
        return sorted(found, key=lambda w: -w.growth)

    def costliest_first(self) -> list[tuple[float, Event]]:
        """The costliest tasks by CPU seconds, the most first."""
        return [(cpu, e) for cpu, _, e in sorted(self.costliest, reverse=True)]


def fmt_mib(size: int) -> str:
    """``+20.0 MiB``: a signed size in MiB."""
    return f"{size / 1048576:+.1f} MiB"


def growing_lines(resources: Resources) -> list[str]:
    """One sentence per growing worker (text and HTML say the same)."""
    return [
        f"{w.name}[{w.pid}] grew {fmt_mib(w.growth)} over {w.tasks} tasks "
        f"({w.grew} of {w.tasks} grew it, {fmt_mib(w.growth // w.tasks)} a task"
        + (f"; RSS {w.last_rss / 1048576:.1f} MiB after its last)" if w.last_rss
           else ")")
        for w in resources.growing()
    ]  # fmt: skip


def costly_lines(resources: Resources) -> list[str]:
    """One line per costliest task: CPU, name, worker, its RSS change."""
    out = []
    for cpu, event in resources.costliest_first():
        delta = (event.get("attributes") or {}).get(RSS_DELTA)
        rss = f", RSS {fmt_mib(delta)}" if type(delta) is int else ""
        who = f"{event.get('process', '?')}[{event.get('pid')}]"
        out.append(f"{cpu:8.3f} s CPU  {event.get('name')} on {who}{rss}")
    return out
