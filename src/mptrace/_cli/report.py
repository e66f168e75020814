"""A run at a glance, from its events: the process tree, failures, pool tasks.

:class:`Report` takes events one at a time and keeps aggregates only: one
:class:`Proc` per process (with its last few records), per-task-name counts,
the slowest and the failed tasks, and the last records of the run for the HTML
page, and (``report_resources``) the workers whose memory grows and the
tasks that cost most CPU, and (``report_waits``) where processes waited on
locks. Its memory grows with the number of processes, not
of events.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

from mptrace._cli.reader import Event
from mptrace._cli.report_resources import Resources
from mptrace._cli.report_waits import Waits

#: Records of the run kept for the HTML page (the last ones).
MAX_RECORDS = 5_000
#: Task slices kept for the HTML timeline; failed tasks are kept first.
MAX_TASK_BARS = 2_000
MAX_FAILED_TASKS = 50
SLOWEST = 5
#: Processes whose last ``stacks`` event is kept (the last ones to have one).
MAX_STACKS = 200
LEVEL_COLUMNS = ("debug", "info", "warning", "error", "critical")
_ASKED_FOR = frozenset(("SIGTERM", "SIGKILL"))


class Proc:
    """What the events say about one process."""

    def __init__(self, pid: int, keep_last: int) -> None:
        self.pid = pid
        self.ppid: int | None = None
        self.name = "?"
        self.start_method: str | None = None
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.begin_ns: int | None = None  # the parent's start()
        self.end_ns: int | None = None  # the parent saw it exit
        self.child = False  # its parent reported its start
        self.exitcode: int | None = None
        self.signal: str | None = None
        self.how: str | None = None  # terminate() or kill() was asked
        self.exc: dict[str, Any] | None = None
        self.crash: str | None = None
        self.cpu_s: float | None = None
        self.peak_rss: int | None = None
        self.levels: dict[Any, int] = {}
        self.last: deque[Event] = deque(maxlen=keep_last)

    def seen(self, ts: int | None) -> None:
        """Widen the time this process was seen to include *ts*."""
        if ts is None:
            return
        if self.first_ns is None or ts < self.first_ns:
            self.first_ns = ts
        if self.last_ns is None or ts > self.last_ns:
            self.last_ns = ts

    def failure(self) -> str | None:
        """Why this process failed, or None: it did not (or it is not known)."""
        exc = self.exc or {}
        if self.crash:
            return f"crashed by {self.signal or 'a signal'}"
        if exc:
            return f"raised {exc.get('type', '?')}: {exc.get('message', '')}"
        if self.signal and not (self.how and self.signal in _ASKED_FOR):
            return f"killed by {self.signal}"
        if self.exitcode not in (None, 0) and not self.signal:
            return f"exited with code {self.exitcode}"
        return None

    def end(self) -> str:
        """How it ended: ``0``, ``code 3``, ``SIGTERM (terminate)``, ``running``..."""
        if self.signal:
            return f"{self.signal} ({self.how})" if self.how else self.signal
        if self.exc and self.exitcode in (None, 1):
            return "raised"
        if self.exitcode is not None:
            return "0" if self.exitcode == 0 else f"code {self.exitcode}"
        return "running" if self.child else "-"

    def duration_s(self) -> float | None:
        """Seconds from start() to exit, or between its first and last event."""
        begin = self.begin_ns if self.begin_ns is not None else self.first_ns
        end = self.end_ns if self.end_ns is not None else self.last_ns
        if begin is None or end is None:
            return None
        return max(0, end - begin) / 1e9


class Tasks:
    """Pool tasks of one function: how many, how many failed, how long."""

    __slots__ = ("count", "failed", "max_ns", "total_ns")

    def __init__(self) -> None:
        self.count = self.failed = self.total_ns = self.max_ns = 0


class Report:
    """Aggregates of a run, fed one event at a time with :meth:`add`."""

    def __init__(self, keep_last: int = 5) -> None:
        self.keep_last = keep_last
        self.procs: dict[int, Proc] = {}
        self.kinds: dict[Any, int] = {}
        self.runs: set[object] = set()
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.records: deque[Event] = deque(maxlen=MAX_RECORDS)
        self.records_seen = 0
        self.tasks: dict[str, Tasks] = {}
        self.failed_tasks: list[Event] = []
        self.slowest: list[tuple[int, int, Event]] = []  # a heap, smallest first
        self.bars: list[tuple[int, int, int, str, bool]] = []
        self.bars_dropped = 0
        self.stacks: dict[Any, Event] = {}  # by pid: the last taken of each
        self.resources = Resources()  # workers that grow, the costliest tasks
        self.waits = Waits()  # long waits on locks, per process and per lock
        self._created: dict[object, int] = {}
        self._order = itertools.count()

    def proc(self, pid: int) -> Proc:
        """The :class:`Proc` of *pid*, made on first sight."""
        found = self.procs.get(pid)
        if found is None:
            found = self.procs[pid] = Proc(pid, self.keep_last)
        return found

    def add(self, event: Event) -> None:
        """Take one event into the aggregates."""
        kind = event.get("kind")
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if "run" in event and len(self.runs) < 100:
            self.runs.add(event["run"])
        ts = event.get("ts", event.get("end_ns"))
        if type(ts) is int:
            if self.first_ns is None or ts < self.first_ns:
                self.first_ns = ts
            if self.last_ns is None or ts > self.last_ns:
                self.last_ns = ts
        else:
            ts = None
        pid = event.get("pid")
        if type(pid) is int:
            p = self.procs.get(pid) or self.proc(pid)
            name = event.get("process")
            if name is not None and name != p.name and isinstance(name, str):
                p.name = name
            ppid = event.get("ppid")
            if ppid is not None and type(ppid) is int:
                p.ppid = ppid
            p.seen(ts)
            if kind == "log":  # the bulk of a file: kept short
                level = event.get("level")
                p.levels[level] = p.levels.get(level, 0) + 1
                p.last.append(event)
                self.records.append(event)
                self.records_seen += 1
                return
        if kind == "lifecycle":
            self._lifecycle(event, ts)
        elif kind == "span":
            self._span(event)
        elif kind == "stacks":
            self.stacks.pop(pid, None)  # to the end: the latest last
            self.stacks[pid] = event
            if len(self.stacks) > MAX_STACKS:
                del self.stacks[next(iter(self.stacks))]

    def _lifecycle(self, event: Event, ts: int | None) -> None:
        transition = event.get("transition")
        target = event.get("target_pid")
        if transition == "created":
            if ts is not None and len(self._created) < 100_000:
                self._created[event.get("span_id")] = ts
            return
        if type(target) is not int:
            return
        p = self.proc(target)
        if isinstance(event.get("target_name"), str):
            p.name = event["target_name"]
        p.start_method = event.get("start_method") or p.start_method
        if transition == "started":
            p.child = True
            if type(event.get("pid")) is int:
                p.ppid = event["pid"]
            p.begin_ns = self._created.pop(event.get("span_id"), ts)
        elif transition == "terminated":
            p.how = str(event.get("how", "terminate"))
        elif transition in ("finished", "exited"):
            p.child = True
            if type(event.get("exitcode")) is int:
                p.exitcode = event["exitcode"]
            if transition == "finished" and isinstance(event.get("exc"), dict):
                p.exc = event["exc"]
            if transition == "exited":
                p.end_ns = ts
                p.signal = event.get("signal") or p.signal
                if isinstance(event.get("crash"), str):
                    p.crash = event["crash"]
            cpu = [event.get("cpu_user_s"), event.get("cpu_system_s")]
            if all(isinstance(c, (int, float)) for c in cpu):
                total = float(cpu[0]) + float(cpu[1])  # type: ignore[arg-type]
                p.cpu_s = total if p.cpu_s is None else max(p.cpu_s, total)
            rss = event.get("peak_rss_bytes")
            if type(rss) is int:
                p.peak_rss = rss if p.peak_rss is None else max(p.peak_rss, rss)

    def _span(self, event: Event) -> None:
        if event.get("events"):
            self.waits.add(event)
        attributes = event.get("attributes")
        if not isinstance(attributes, dict) or attributes.get("mptrace.span") != "task":
            return
        start, end = event.get("start_ns"), event.get("end_ns")
        if type(start) is not int or type(end) is not int:
            return
        name = str(event.get("name", "?"))
        failed = event.get("status") == "error"
        stats = self.tasks.get(name) or self.tasks.setdefault(name, Tasks())
        stats.count += 1
        stats.failed += failed
        stats.total_ns += end - start
        stats.max_ns = max(stats.max_ns, end - start)
        self.resources.add(event, attributes)
        pid = event.get("pid")
        if failed and len(self.failed_tasks) < MAX_FAILED_TASKS:
            self.failed_tasks.append(event)
        entry = (end - start, next(self._order), event)
        if len(self.slowest) < SLOWEST:
            heapq.heappush(self.slowest, entry)
        elif entry[0] > self.slowest[0][0]:
            heapq.heapreplace(self.slowest, entry)
        if type(pid) is int and (len(self.bars) < MAX_TASK_BARS or failed):
            if len(self.bars) >= MAX_TASK_BARS:  # a failure takes an ok task's place
                ok = next((i for i, b in enumerate(self.bars) if not b[4]), None)
                if ok is None:
                    self.bars_dropped += 1
                    return
                self.bars.pop(ok)
                self.bars_dropped += 1
            self.bars.append((pid, start, end, name, failed))
        else:
            self.bars_dropped += 1

    # -- reading it -------------------------------------------------------------

    def failed(self) -> list[Proc]:
        """The processes that failed, in the order they started."""
        return [p for _, p in self.tree_order() if p.failure()]

    def tree_order(self) -> list[tuple[int, Proc]]:
        """Every process as (depth, proc), parents before their children."""
        kids: dict[int | None, list[Proc]] = {}
        for p in self.procs.values():
            parent = p.ppid if p.ppid in self.procs and p.ppid != p.pid else None
            kids.setdefault(parent, []).append(p)
        out: list[tuple[int, Proc]] = []

        def when(p: Proc) -> tuple[int, int]:
            t = p.begin_ns if p.begin_ns is not None else p.first_ns
            return (t if t is not None else 0, p.pid)

        def walk(parent: int | None, depth: int) -> None:
            for p in sorted(kids.get(parent, ()), key=when):
                out.append((depth, p))
                if len(out) <= len(self.procs):
                    walk(p.pid, depth + 1)

        walk(None, 0)
        return out


def fmt_ms(ns: int) -> str:
    """``40 µs`` below 1 ms, ``12.3 ms`` below 1 s, ``4.56 s`` from there."""
    ms = ns / 1e6
    if ms < 1:
        return f"{ns / 1000:.0f} µs"
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def process_rows(report: Report) -> list[dict[str, str]]:
    """One row of text cells per process, in tree order, for any table."""
    rows = []
    for depth, p in report.tree_order():
        duration = p.duration_s()
        row = {
            "pid": str(p.pid),
            "process": "  " * depth + ("└ " if depth else "") + p.name,
            "method": p.start_method or "-",
            "end": p.end(),
            "duration": "-" if duration is None else f"{duration:.2f} s",
            "CPU": "-" if p.cpu_s is None else f"{p.cpu_s:.2f} s",
            "peak RSS": "-"
            if p.peak_rss is None
            else f"{p.peak_rss / 1048576:.1f} MiB",
        }
        for level in LEVEL_COLUMNS:
            row[level] = str(p.levels.get(level, 0))
        row["failed"] = "yes" if p.failure() else ""
        rows.append(row)
    return rows
