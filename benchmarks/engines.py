"""Benchmark: what a session costs a program that runs its work on joblib or Dask.

For each engine, the same small program runs twice per round, as its own
process, in one run on one machine:

* plain: no mptrace;
* mptrace: the same inside ``with mptrace.init(exporters=["jsonl:FILE"])``
  (tracing on, the default): the engine's workers join the session, every
  task is a ``task`` span sent by the worker that ran it.

joblib: the program starts loky's workers with a first, untimed
``Parallel`` call, then times two calls of ``joblib.Parallel(n_jobs=2)``
with joblib's automatic batching (a span per batch):

a. ``--tasks-trivial`` trivial tasks (default 20,000): ``x * x``;
b. ``--tasks-1ms`` tasks (default 2,000) of about 1 ms of CPU each, a pure
   Python loop calibrated on this machine before the runs.

Dask: the program starts a ``LocalCluster`` of two worker processes of one
thread each and a ``Client``, maps a few untimed tasks, then times
``client.gather(client.map(...))`` over ``--dask-trivial`` trivial tasks
(default 2,000) and ``--dask-1ms`` tasks of 1 ms (default 500): each task
its own span, as Dask has no batches.

"Program" is the wall time of the whole program, from its start to its exit
as this script sees it: Python's start-up, the imports, the session's
start and end, and the end of loky's workers at exit. The end of the
``with`` block does not wait for loky's idle workers (they live on for
reuse, ``idle_worker_timeout`` 300 s), so the program's time differs by the
session's start and end only. Rounds alternate the two programs; the best
(lowest) time of each is reported. "Items in spans" sums
``mptrace.task.items`` over the task spans of the last mptrace run, against
the tasks the program ran.

Run from the repository root, with mptrace, joblib and distributed installed::

    python benchmarks/engines.py
    python benchmarks/engines.py --repeat 5 --tasks-1ms 5000

Progress goes to stderr; the report (a Markdown table) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from _common import positive_int, print_header, print_targets

#: The program's wall time with a session, over the plain program's, at most.
TARGET_PROGRAM_S = 1.0
TARGET_1MS = 1.10
ENGINES = ("joblib", "dask")


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def square(x: int) -> int:
    return x * x


def calibrate(seconds: float) -> int:
    """The ``burn`` argument that takes about *seconds* of CPU here."""
    probe = 200_000
    burn(probe)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        burn(probe)
        best = min(best, time.perf_counter() - start)
    return max(1, round(probe * seconds / best))


# -- the program, run as a child of this script ----------------------------------


def program(
    engine: str, traced: bool, trivial: int, ms: int, loops: int, out: str
) -> None:
    import contextlib

    import mptrace

    session: Any = (
        mptrace.init(exporters=[f"jsonl:{out}"]) if traced else contextlib.nullcontext()
    )
    with session:
        timings = (on_dask if engine == "dask" else on_joblib)(trivial, ms, loops)
    print(json.dumps(timings))


def on_dask(trivial: int, ms: int, loops: int) -> dict[str, float]:
    from distributed import Client, LocalCluster

    timings: dict[str, float] = {}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(square, range(4), pure=False))  # warm up
        start = time.perf_counter()
        client.gather(client.map(square, range(trivial), pure=False))
        timings["trivial"] = time.perf_counter() - start
        start = time.perf_counter()
        client.gather(client.map(burn, [loops] * ms, pure=False))
        timings["1ms"] = time.perf_counter() - start
    return timings


def on_joblib(trivial: int, ms: int, loops: int) -> dict[str, float]:
    import joblib

    timings: dict[str, float] = {}
    parallel = joblib.Parallel(n_jobs=2)
    parallel(joblib.delayed(square)(i) for i in range(4))  # start the workers
    start = time.perf_counter()
    parallel(joblib.delayed(square)(i) for i in range(trivial))
    timings["trivial"] = time.perf_counter() - start
    start = time.perf_counter()
    parallel(joblib.delayed(burn)(loops) for _ in range(ms))
    timings["1ms"] = time.perf_counter() - start
    return timings


# -- the runs --------------------------------------------------------------------


def run(
    engine: str, traced: bool, tasks: tuple[int, int], loops: int, out: str
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--program", "mptrace" if traced else "plain"]
    command += ["--engine", engine, "--loops", str(loops), "--out", out]
    command += ["--tasks-trivial", str(tasks[0]), "--tasks-1ms", str(tasks[1])]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the program failed:\n{done.stderr}")
    timings: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    timings["program"] = wall
    return timings


def items_in_spans(path: str) -> int:
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event.get("kind") == "span" and event["name"].startswith("task "):
                total += event["attributes"].get("mptrace.task.items", 0)
    return total


def measure(
    engine: str, tasks: tuple[int, int], repeat: int, loops: int
) -> tuple[dict[bool, dict[str, float]], int]:
    """Best timings of each program over *repeat* rounds; items in spans."""
    best: dict[bool, dict[str, float]] = {False: {}, True: {}}
    with tempfile.TemporaryDirectory(prefix="mptrace-engines-") as tmp:
        out = os.path.join(tmp, "events.jsonl")
        for round_ in range(repeat):
            for traced in (False, True):
                if traced and os.path.exists(out):
                    os.remove(out)
                which = "mptrace" if traced else "plain"
                print(f"{engine} round {round_ + 1}: {which}", file=sys.stderr)
                for key, value in run(engine, traced, tasks, loops, out).items():
                    best[traced][key] = min(best[traced].get(key, value), value)
        return best, items_in_spans(out)


def report(
    engine: str,
    tasks: tuple[int, int],
    best: dict[bool, dict[str, float]],
    in_spans: int,
) -> list[tuple[bool, str]]:
    """The engine's table; its targets."""
    print(f"\n## {engine}\n")
    print("| workload | tasks | plain | mptrace | ratio | extra per task |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [
        ("trivial (`x * x`)", "trivial", tasks[0]),
        ("1 ms of CPU", "1ms", tasks[1]),
    ]
    for label, key, count in rows:
        plain, traced = best[False][key], best[True][key]
        extra = (traced - plain) / count * 1e6
        print(
            f"| {label} | {count:,} | {plain:.3f} s | {traced:.3f} s "
            f"| {traced / plain:.2f} | {extra:+.1f} µs |"
        )
    total = sum(tasks) + 4
    plain, traced = best[False]["program"], best[True]["program"]
    print(
        f"| the whole program | {total:,} | {plain:.3f} s | {traced:.3f} s "
        f"| {traced / plain:.2f} | {traced - plain:+.3f} s in all |"
    )
    print(f"\nItems in spans (last mptrace run): {in_spans:,} of {total:,}")
    ratio_1ms = best[True]["1ms"] / best[False]["1ms"]
    return [
        (
            traced - plain <= TARGET_PROGRAM_S,
            f"{engine}: the program with a session within {TARGET_PROGRAM_S:.0f} s "
            f"of the program without: {traced - plain:+.3f} s",
        ),
        (
            ratio_1ms <= TARGET_1MS,
            f"{engine}: 1 ms tasks at most {TARGET_1MS:.2f}x: {ratio_1ms:.2f}x",
        ),
        (in_spans == total, f"{engine}: every item in a span: {in_spans} of {total}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, action="append")
    parser.add_argument("--tasks-trivial", type=positive_int, default=20_000)
    parser.add_argument("--tasks-1ms", type=positive_int, default=2_000)
    parser.add_argument("--dask-trivial", type=positive_int, default=2_000)
    parser.add_argument("--dask-1ms", type=positive_int, default=500)
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--program", choices=("plain", "mptrace"))
    parser.add_argument("--loops", type=positive_int)
    parser.add_argument("--out")
    args = parser.parse_args()
    engines = args.engine or list(ENGINES)
    if args.program:
        program(
            engines[0],
            args.program == "mptrace",
            args.tasks_trivial,
            args.tasks_1ms,
            args.loops,
            args.out,
        )
        return

    loops = calibrate(0.001)
    sizes = {
        "joblib": (args.tasks_trivial, args.tasks_1ms),
        "dask": (args.dask_trivial, args.dask_1ms),
    }
    results = {e: measure(e, sizes[e], args.repeat, loops) for e in engines}
    print_header("Task engines under a session", "benchmarks/engines.py", "per engine")
    versions = []
    for engine in engines:
        module = __import__("joblib" if engine == "joblib" else "distributed")
        versions.append(f"{module.__name__} {module.__version__}")
    print(f"- {', '.join(versions)}; 2 workers; best of {args.repeat} rounds")
    print("- joblib: loky, n_jobs=2, batch_size='auto' (a span per batch)")
    print("- dask: LocalCluster of 2 processes, 1 thread each (a span per task)")
    targets = []
    for engine in engines:
        targets += report(engine, sizes[engine], *results[engine])
    print_targets(targets)


if __name__ == "__main__":
    main()
