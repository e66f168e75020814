"""Benchmark: what a session costs a program that runs its work on joblib.

The same small program runs twice per round, as its own process, in one run
on one machine:

* plain: no mptrace;
* mptrace: the same inside ``with mptrace.init(exporters=["jsonl:FILE"])``
  (tracing on, the default): loky's workers join the session, every batch
  is a ``task`` span sent by the worker that ran it.

The program starts loky's workers with a first, untimed ``Parallel`` call,
then times two calls of ``joblib.Parallel(n_jobs=2)`` with joblib's
automatic batching:

a. ``--tasks-trivial`` trivial tasks (default 20,000): ``x * x``;
b. ``--tasks-1ms`` tasks (default 2,000) of about 1 ms of CPU each, a pure
   Python loop calibrated on this machine before the runs.

"Program" is the wall time of the whole program, from its start to its exit
as this script sees it: Python's start-up, the imports, the session's
start and end, and the end of loky's workers at exit. The end of the
``with`` block does not wait for loky's idle workers (they live on for
reuse, ``idle_worker_timeout`` 300 s), so the program's time differs by the
session's start and end only. Rounds alternate the two programs; the best
(lowest) time of each is reported. "Items in spans" sums
``mptrace.task.items`` over the task spans of the last mptrace run, against
the tasks the program ran.

Run from the repository root, with mptrace and joblib installed::

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


def program(traced: bool, trivial: int, ms: int, loops: int, out: str) -> None:
    import contextlib

    import joblib

    import mptrace

    session: Any = (
        mptrace.init(exporters=[f"jsonl:{out}"]) if traced else contextlib.nullcontext()
    )
    timings: dict[str, float] = {}
    with session:
        parallel = joblib.Parallel(n_jobs=2)
        parallel(joblib.delayed(square)(i) for i in range(4))  # start the workers
        start = time.perf_counter()
        parallel(joblib.delayed(square)(i) for i in range(trivial))
        timings["trivial"] = time.perf_counter() - start
        start = time.perf_counter()
        parallel(joblib.delayed(burn)(loops) for _ in range(ms))
        timings["1ms"] = time.perf_counter() - start
    print(json.dumps(timings))


# -- the runs --------------------------------------------------------------------


def run(traced: bool, args: argparse.Namespace, loops: int, out: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--program", "mptrace" if traced else "plain"]
    command += ["--tasks-trivial", str(args.tasks_trivial)]
    command += ["--tasks-1ms", str(args.tasks_1ms), "--loops", str(loops)]
    command += ["--out", out]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks-trivial", type=positive_int, default=20_000)
    parser.add_argument("--tasks-1ms", type=positive_int, default=2_000)
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--program", choices=("plain", "mptrace"))
    parser.add_argument("--loops", type=positive_int)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.program:
        program(
            args.program == "mptrace",
            args.tasks_trivial,
            args.tasks_1ms,
            args.loops,
            args.out,
        )
        return

    loops = calibrate(0.001)
    best: dict[bool, dict[str, float]] = {False: {}, True: {}}
    with tempfile.TemporaryDirectory(prefix="mptrace-engines-") as tmp:
        out = os.path.join(tmp, "events.jsonl")
        for round_ in range(args.repeat):
            for traced in (False, True):
                if traced and os.path.exists(out):
                    os.remove(out)
                print(
                    f"round {round_ + 1}: {'mptrace' if traced else 'plain'}",
                    file=sys.stderr,
                )
                for key, value in run(traced, args, loops, out).items():
                    best[traced][key] = min(best[traced].get(key, value), value)
        accounted = items_in_spans(out)

    import joblib

    print_header("joblib.Parallel under a session", "benchmarks/engines.py", "loky")
    print(f"- joblib {joblib.__version__}, n_jobs=2, batch_size='auto'")
    print(f"- best of {args.repeat} rounds\n")
    print("| workload | tasks | plain | mptrace | ratio | extra per task |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [
        ("trivial (`x * x`)", "trivial", args.tasks_trivial),
        ("1 ms of CPU", "1ms", args.tasks_1ms),
    ]
    for label, key, tasks in rows:
        plain, traced = best[False][key], best[True][key]
        extra = (traced - plain) / tasks * 1e6
        print(
            f"| {label} | {tasks:,} | {plain:.3f} s | {traced:.3f} s "
            f"| {traced / plain:.2f} | {extra:+.1f} µs |"
        )
    plain, traced = best[False]["program"], best[True]["program"]
    print(
        f"| the whole program | {args.tasks_trivial + args.tasks_1ms + 4:,} "
        f"| {plain:.3f} s | {traced:.3f} s | {traced / plain:.2f} "
        f"| {traced - plain:+.3f} s in all |"
    )
    total = args.tasks_trivial + args.tasks_1ms + 4
    print(f"\nItems in spans (last mptrace run): {accounted:,} of {total:,}")
    ratio_1ms = best[True]["1ms"] / best[False]["1ms"]
    print_targets(
        [
            (
                traced - plain <= TARGET_PROGRAM_S,
                f"the program with a session within {TARGET_PROGRAM_S:.0f} s of "
                f"the program without: {traced - plain:+.3f} s",
            ),
            (
                ratio_1ms <= TARGET_1MS,
                f"1 ms tasks at most {TARGET_1MS:.2f}x: {ratio_1ms:.2f}x",
            ),
            (accounted == total, f"every item in a span: {accounted} of {total}"),
        ]
    )


if __name__ == "__main__":
    main()
