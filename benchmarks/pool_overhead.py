"""Benchmark: what tracing every task costs a process pool.

``multiprocessing.Pool(2)`` against ``mptrace.Pool(2)`` on the same work, in
one run on one machine:

* plain: ``multiprocessing.get_context(method).Pool(2)``, no mptrace at all.
* mptrace: ``mptrace.Pool(2, context=...)`` inside
  ``mptrace.init(exporters=["jsonl:FILE"])`` with tracing on (the default):
  every worker is a process span, ``map`` is a span, and every item is a
  ``task`` span sent to the listener by the worker that ran it.
* plain under mptrace run: the plain ``multiprocessing`` pool of the first
  line, in a session that instrumented the stdlib (``mptrace run`` is
  ``init()`` and then the program, in the same interpreter, so the pool is
  made and timed here the same way); its workers and tasks are traced
  exactly like ``mptrace.Pool``'s.

Three workloads, each one ``pool.map`` call with the default chunksize:

a. ``--tasks-1ms`` tasks (default 10,000) of about 1 ms of CPU each, a pure
   Python loop whose length is calibrated on this machine before the runs;
b. ``--tasks-trivial`` trivial tasks (default 200,000): ``x * x``;
c. ``--tasks-long`` tasks (default 8) of about 0.5 s of CPU each.

The clock runs from submitting the work until every result is back
(``pool.map``). Starting the pool (until every worker has run a first,
untimed task), closing and joining it, and starting and shutting down the
mptrace session are not timed; pool start-up is reported on its own. Each
workload runs ``--repeat`` times, alternating the two pools; the best (lowest)
time of each is reported. "Extra CPU per task" compares the CPU seconds that
every process involved (this one, the workers, mptrace's listener) used
during ``pool.map``, least of all runs, which is steadier than wall time on a
busy machine. "Tasks accounted" counts, after each mptrace run, the ``task``
spans in the JSON-lines file whose parent is that run's ``Pool.map`` span,
against the number of tasks; the fewest over all runs is reported.

VizTracer, the tool a person might reach for instead, runs workload (a) with
a plain ``multiprocessing.Pool`` in a small script under its command line
(``python -m viztracer --quiet -o TRACE.json script.py``), which traces the
pool's worker processes too; the script times its own ``pool.map`` the same
way, and the whole command (start-up, tracing, saving the trace of every
process) is timed as well. It is skipped, with a line that says so, when
VizTracer is not installed (``pip install viztracer``).

Run from the repository root, with mptrace installed::

    python benchmarks/pool_overhead.py
    python benchmarks/pool_overhead.py --start-method spawn --repeat 5
    python benchmarks/pool_overhead.py --tasks-trivial 50000 --no-viztracer

Progress goes to stderr; the report (a Markdown table) to stdout. Every
temporary file lives in one temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from _common import positive_int, print_header, print_targets

import mptrace

PROCESSES = 2
#: The longest one pool.map may take before the run is abandoned as hung.
MAP_TIMEOUT = 900.0

# Targets: the traced pool's time over the plain pool's.
TARGET_1MS = 1.05
TARGET_LONG = 1.05
TARGET_TRIVIAL = 2.0


# -- the work (module level, so that it pickles by reference) ----------------------


def burn(n: int) -> int:
    """About ``n`` iterations of pure-Python CPU work."""
    x = 0
    for i in range(n):
        x += i * i
    return x & 0xFFFF


def square(x: int) -> int:
    return x * x


def calibrate(seconds: float) -> int:
    """The ``burn`` argument that takes about *seconds* of CPU here."""
    probe = 200_000
    burn(probe)  # warm up
    best = min(_timed(burn, probe) for _ in range(5))
    return max(1, round(probe * seconds / best))


def _timed(func: Callable[[int], Any], arg: int) -> float:
    start = time.perf_counter()
    func(arg)
    return time.perf_counter() - start


@dataclass
class Workload:
    key: str
    label: str
    func: Callable[[int], int]
    items: list[int]
    target: float

    @property
    def tasks(self) -> int:
        return len(self.items)

    def expected(self) -> list[int]:
        if self.func is square:
            return [x * x for x in self.items]
        first = burn(self.items[0])  # every item is the same burn
        return [first] * len(self.items)


# -- one run of each pool --------------------------------------------------------------


@dataclass
class Run:
    seconds: float  # pool.map, submit to last result
    pool_start: float  # the constructor, until every worker has run a task
    cpu: float  # CPU seconds of every process involved, during pool.map
    accounted: int | None = None  # task spans under this run's Pool.map span
    spans_seen: int | None = None  # every task span in the file


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of this process and of *pids* so far."""
    total = sum(os.times()[:2])
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def timed_map(
    pool: Any, work: Workload, pids: list[int]
) -> tuple[list[int], float, float]:
    """``pool.map`` of *work*: (results, wall seconds, CPU seconds of all *pids*)."""
    cpu = cpu_seconds(pids)
    start = time.perf_counter()
    results = pool.map_async(work.func, work.items).get(MAP_TIMEOUT)
    seconds = time.perf_counter() - start
    return results, seconds, cpu_seconds(pids) - cpu


def warm_up(_: int) -> int:
    """A first task for each worker, so that start-up is not timed."""
    time.sleep(0.01)
    return os.getpid()


def start_pool(make: Callable[[], Any]) -> tuple[Any, float]:
    """A pool from *make* once every worker has run a task; and how long that took."""
    start = time.perf_counter()
    pool = make()
    deadline = start + 60
    while len(set(pool.map(warm_up, range(PROCESSES), chunksize=1))) < PROCESSES:
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"the pool's {PROCESSES} workers did not all start in 60 s"
            )
    return pool, time.perf_counter() - start


def run_plain(method: str, work: Workload, expected: list[int]) -> Run:
    ctx = multiprocessing.get_context(method)
    pool, pool_start = start_pool(lambda: ctx.Pool(PROCESSES))
    try:
        pids = [p.pid for p in multiprocessing.active_children()]
        results, seconds, cpu = timed_map(pool, work, pids)
    finally:
        pool.close()
        pool.join()
    _check(results, expected, "multiprocessing.Pool")
    return Run(seconds, pool_start, cpu)


def run_mptrace(
    method: str, work: Workload, expected: list[int], path: str, plain: bool = False
) -> Run:
    """mptrace's pool; with *plain*, the stdlib's pool, instrumented by the session."""
    ctx = multiprocessing.get_context(method)
    session = mptrace.init(service_name="pool-overhead", exporters=[f"jsonl:{path}"])
    try:
        if plain:
            pool, pool_start = start_pool(lambda: ctx.Pool(PROCESSES))
        else:
            pool, pool_start = start_pool(lambda: mptrace.Pool(PROCESSES, context=ctx))
        try:
            pids = [p.pid for p in multiprocessing.active_children()]
            pids.append(session.listener_pid)
            results, seconds, cpu = timed_map(pool, work, pids)
        finally:
            pool.close()
            pool.join()
    finally:
        session.shutdown()
    _check(results, expected, "mptrace.Pool")
    accounted, seen = count_task_spans(path, work.func.__name__)
    return Run(seconds, pool_start, cpu, accounted, seen)


def _check(results: list[int], expected: list[int], who: str) -> None:
    if results != expected:
        raise RuntimeError(f"{who} returned wrong results")


def count_task_spans(path: str, func: str) -> tuple[int, int]:
    """Items covered by task spans of *func* in *path*: (under its Pool.map span, all).

    Removes *path*.

    Span names end with the function's qualified name: ``Pool.map
    __main__.burn`` in the parent, ``task __main__.burn`` in the workers.
    """
    marker = f'.{func}"'.encode()
    map_ids: set[str] = set()
    parents: dict[str | None, int] = {}
    seen = 0
    try:
        with open(path, "rb") as file:
            for line in file:
                if marker not in line or b'"span"' not in line:
                    continue
                span = json.loads(line)
                kind = span.get("attributes", {}).get("mptrace.span")
                if not span["name"].endswith(f".{func}"):
                    continue
                if kind == "task":
                    # A map task is a chunk of items; it says how many.
                    items = span.get("attributes", {}).get("mptrace.task.items", 1)
                    seen += items
                    parent = span.get("parent_span_id")
                    parents[parent] = parents.get(parent, 0) + items
                elif span["name"].startswith("Pool.map "):
                    map_ids.add(span["span_id"])
    finally:
        if os.path.exists(path):
            os.remove(path)
    return sum(n for parent, n in parents.items() if parent in map_ids), seen


# -- VizTracer ------------------------------------------------------------------

VIZ_SCRIPT = """\
import json, multiprocessing, os, sys, time


def burn(n):
    x = 0
    for i in range(n):
        x += i * i
    return x & 0xFFFF


def warm_up(_):
    time.sleep(0.01)
    return os.getpid()


if __name__ == "__main__":
    n, tasks, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    pool = multiprocessing.get_context(method).Pool(2)
    try:
        while len(set(pool.map(warm_up, range(2), chunksize=1))) < 2:
            pass
        start = time.perf_counter()
        results = pool.map(burn, [n] * tasks)
        seconds = time.perf_counter() - start
    finally:
        pool.close()
        pool.join()
    assert len(results) == tasks
    print(json.dumps({"seconds": seconds}))
"""


@dataclass
class VizRun:
    seconds: float  # pool.map inside the traced script
    command_seconds: float  # the whole viztracer command, saving included
    trace_bytes: int
    pids: int  # processes with events in the trace


def viztracer_available() -> bool:
    return importlib.util.find_spec("viztracer") is not None


def run_viztracer(method: str, work: Workload, folder: str) -> VizRun:
    script = os.path.join(folder, "viz_workload.py")
    trace = os.path.join(folder, "viz_trace.json")
    with open(script, "w", encoding="utf-8") as f:
        f.write(VIZ_SCRIPT)
    command = [
        sys.executable,
        "-m",
        "viztracer",
        "--quiet",
        "-o",
        trace,
        script,
        str(work.items[0]),
        str(work.tasks),
        method,
    ]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=MAP_TIMEOUT, cwd=folder
    )
    command_seconds = time.perf_counter() - start
    try:
        if done.returncode != 0:
            raise RuntimeError(
                f"viztracer exited with {done.returncode}: "
                f"{done.stderr.strip()[-2000:]}"
            )
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        size = os.path.getsize(trace)
        with open(trace, encoding="utf-8") as f:
            events = json.load(f).get("traceEvents", [])
        pids = len({e.get("pid") for e in events if e.get("ph") == "X"})
    finally:
        for path in (script, trace):
            if os.path.exists(path):
                os.remove(path)
    return VizRun(seconds, command_seconds, size, pids)


# -- repeating and reporting -----------------------------------------------------------


@dataclass
class Results:
    plain: dict[str, list[Run]] = field(default_factory=dict)
    traced: dict[str, list[Run]] = field(default_factory=dict)
    zero: dict[str, list[Run]] = field(default_factory=dict)
    viz: list[VizRun] = field(default_factory=list)
    viz_skipped: str | None = None

    def best(self, tool: str, key: str) -> Run:
        return min(getattr(self, tool)[key], key=lambda r: r.seconds)

    def least_cpu(self, tool: str, key: str) -> float:
        return min(r.cpu for r in getattr(self, tool)[key])

    def fewest_accounted(self, key: str) -> int:
        return min(r.accounted or 0 for r in self.traced[key])

    def ratio(self, key: str, tool: str = "traced") -> float:
        return self.best(tool, key).seconds / self.best("plain", key).seconds


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_workloads(args: argparse.Namespace) -> list[Workload]:
    progress("calibrating the 1 ms busy loop ...")
    n_1ms = calibrate(0.001)
    n_long = calibrate(0.5)
    return [
        Workload(
            "a",
            f"(a) {args.tasks_1ms:,} × 1 ms CPU",
            burn,
            [n_1ms] * args.tasks_1ms,
            TARGET_1MS,
        ),
        Workload(
            "b",
            f"(b) {args.tasks_trivial:,} × `x * x`",
            square,
            list(range(args.tasks_trivial)),
            TARGET_TRIVIAL,
        ),
        Workload(
            "c",
            f"(c) {args.tasks_long:,} × 0.5 s CPU",
            burn,
            [n_long] * args.tasks_long,
            TARGET_LONG,
        ),
    ]


def run_all(args: argparse.Namespace, works: list[Workload], folder: str) -> Results:
    results = Results()
    for work in works:
        expected = work.expected()
        results.plain[work.key], results.traced[work.key] = [], []
        results.zero[work.key] = []
        for rep in range(1, args.repeat + 1):
            plain = run_plain(args.start_method, work, expected)
            results.plain[work.key].append(plain)
            path = os.path.join(folder, f"spans-{work.key}-{rep}.jsonl")
            traced = run_mptrace(args.start_method, work, expected, path)
            results.traced[work.key].append(traced)
            path = os.path.join(folder, f"zero-{work.key}-{rep}.jsonl")
            zero = run_mptrace(args.start_method, work, expected, path, plain=True)
            results.zero[work.key].append(zero)
            progress(
                f"[{rep}/{args.repeat}] {work.label}: plain {plain.seconds:.3f} s, "
                f"mptrace {traced.seconds:.3f} s, task spans {traced.accounted:,}/"
                f"{work.tasks:,}; plain under mptrace run {zero.seconds:.3f} s, "
                f"task spans {zero.accounted:,}/{work.tasks:,}"
            )
    if not args.viztracer:
        results.viz_skipped = "VizTracer: skipped (--no-viztracer)."
    elif not viztracer_available():
        results.viz_skipped = (
            "VizTracer: skipped, it is not installed here (`pip install viztracer`)."
        )
    else:
        work = works[0]
        for rep in range(1, args.viz_repeat + 1):
            viz = run_viztracer(args.start_method, work, folder)
            results.viz.append(viz)
            progress(
                f"[{rep}/{args.viz_repeat}] {work.label} under VizTracer: "
                f"pool.map {viz.seconds:.3f} s, command {viz.command_seconds:.3f} s"
            )
    return results


def table(results: Results, works: list[Workload]) -> list[str]:
    rows = [
        "| workload | plain Pool (s) | mptrace Pool (s) | mptrace ÷ plain "
        "| traced cost per task (µs) | extra CPU per task (µs) | tasks accounted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for work in works:
        plain, traced = (
            results.best("plain", work.key),
            results.best("traced", work.key),
        )
        per_task = (traced.seconds - plain.seconds) / work.tasks * 1e6
        cpu = results.least_cpu("traced", work.key) - results.least_cpu(
            "plain", work.key
        )
        accounted = results.fewest_accounted(work.key)
        rows.append(
            f"| {work.label} | {plain.seconds:.3f} | {traced.seconds:.3f} "
            f"| {results.ratio(work.key):.2f}× | {per_task:,.1f} "
            f"| {cpu / work.tasks * 1e6:,.1f} | {accounted:,}/{work.tasks:,} |"
        )
    return rows


def zero_table(results: Results, works: list[Workload]) -> list[str]:
    rows = [
        "| workload | plain Pool (s) | the same Pool under `mptrace run` (s) "
        "| ÷ plain | tasks accounted |",
        "|---|---:|---:|---:|---:|",
    ]
    for work in works:
        plain, zero = results.best("plain", work.key), results.best("zero", work.key)
        accounted = min(r.accounted or 0 for r in results.zero[work.key])
        rows.append(
            f"| {work.label} | {plain.seconds:.3f} | {zero.seconds:.3f} "
            f"| {results.ratio(work.key, 'zero'):.2f}× | {accounted:,}/{work.tasks:,} |"
        )
    return rows


def viz_table(results: Results, works: list[Workload]) -> list[str]:
    if results.viz_skipped:
        return [results.viz_skipped]
    work = works[0]
    plain = results.best("plain", work.key).seconds
    traced = results.best("traced", work.key).seconds
    viz = min(results.viz, key=lambda r: r.seconds)
    command = min(r.command_seconds for r in results.viz)
    return [
        f"| {work.label}, traced by | pool.map (s) | ÷ plain Pool | whole command (s) "
        "| processes in the trace | trace size |",
        "|---|---:|---:|---:|---:|---:|",
        f"| mptrace | {traced:.3f} | {traced / plain:.2f}× | | | |",
        f"| VizTracer (`python -m viztracer`) | {viz.seconds:.3f} | "
        f"{viz.seconds / plain:.2f}× | {command:.3f} | {viz.pids} "
        f"| {viz.trace_bytes / 1e6:,.1f} MB |",
    ]


def start_table(results: Results, works: list[Workload]) -> list[str]:
    plain = min(r.pool_start for runs in results.plain.values() for r in runs)
    traced = min(r.pool_start for runs in results.traced.values() for r in runs)
    return [
        "| pool start-up: constructor until every worker ran a task (best) "
        "| plain Pool | mptrace Pool |",
        "|---|---:|---:|",
        f"| ms | {plain * 1e3:.1f} | {traced * 1e3:.1f} |",
    ]


def targets(results: Results, works: list[Workload]) -> list[tuple[bool, str]]:
    out = []
    for work in works:
        ratio = results.ratio(work.key)
        out.append(
            (
                ratio <= work.target,
                f"mptrace ≤ {work.target:g}× plain, {work.label}: {ratio:.2f}×",
            )
        )
    for work in works:
        ratio = results.ratio(work.key, "zero")
        out.append(
            (
                ratio <= work.target,
                f"plain Pool under mptrace run ≤ {work.target:g}× plain, "
                f"{work.label}: {ratio:.2f}×",
            )
        )
    lost = [
        f"{w.key}: {results.fewest_accounted(w.key):,}/{w.tasks:,}"
        for w in works
        if results.fewest_accounted(w.key) != w.tasks
        or any(r.spans_seen != w.tasks for r in results.traced[w.key])
        or any(r.accounted != w.tasks for r in results.zero[w.key])
    ]
    out.append(
        (
            not lost,
            "every task accounted for (the task spans under Pool.map cover every item, every run)"
            + (f": {', '.join(lost)}" if lost else ""),
        )
    )
    return out


def report(results: Results, works: list[Workload], args: argparse.Namespace) -> None:
    print_header(
        "mptrace pool overhead benchmark",
        "benchmarks/pool_overhead.py",
        f"{args.start_method}; {PROCESSES} worker processes",
    )
    print(
        f"- best of {args.repeat} runs; pool.map from submission to the last result; "
        "traced cost per task = (mptrace − plain) ÷ tasks, wall time; extra CPU "
        "per task = the same for the CPU time of every process (parent, workers, "
        "listener) during pool.map, least of all runs; tasks accounted = fewest "
        "items covered by task spans under Pool.map over all runs\n"
    )
    print("\n".join(table(results, works)))
    print()
    print("\n".join(zero_table(results, works)))
    print()
    print("\n".join(viz_table(results, works)))
    print()
    print("\n".join(start_table(results, works)))
    print_targets(targets(results, works))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        default="fork",
        help="how pool workers are started (default: fork)",
    )
    parser.add_argument(
        "--tasks-1ms",
        type=positive_int,
        default=10_000,
        help="tasks of about 1 ms of CPU in workload (a) (default: 10,000)",
    )
    parser.add_argument(
        "--tasks-trivial",
        type=positive_int,
        default=200_000,
        help="trivial tasks in workload (b) (default: 200,000)",
    )
    parser.add_argument(
        "--tasks-long",
        type=positive_int,
        default=8,
        help="tasks of about 0.5 s of CPU in workload (c) (default: 8)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="runs of each workload and pool; the best is reported (default: 3)",
    )
    parser.add_argument(
        "--viz-repeat",
        type=positive_int,
        default=1,
        help="runs of workload (a) under VizTracer (default: 1)",
    )
    parser.add_argument(
        "--no-viztracer",
        dest="viztracer",
        action="store_false",
        help="do not run VizTracer",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    works = make_workloads(args)
    with tempfile.TemporaryDirectory(prefix="mptrace-pool-bench-") as folder:
        results = run_all(args, works, folder)
    report(results, works, args)


if __name__ == "__main__":
    main()
