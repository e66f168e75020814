"""Benchmark: what each child costs, and what the listener keeps of it.

Two measurements, each against the plain program in the same run:

1. **Start cost per child**, under fork, spawn and forkserver: ``--children``
   (default 20) children started and joined one after another, each logging
   one line, with ``multiprocessing.get_context(method).Process`` and no
   mptrace (the stdlib; the line goes to a ``logging`` handler that discards
   it), then with ``mptrace.get_context(method).Process`` inside
   ``mptrace.init(exporters=["jsonl:FILE"])``. Each in a fresh interpreter,
   as a program runs; a first child (which starts the fork server) is not
   timed. Wall time per child, best of ``--repeat`` runs (default 3).
2. **The listener's memory over many children**: ``--many`` (default 2,000)
   fork children, one after another, each logging one line, in one session;
   the listener's resident set size (psutil) after a flush at 0, 25 %, 50 %
   and 100 % of them. The target: flat (growth from the 25 % mark to the end
   under 2 MiB), since the listener keeps at most ``ROWS_KEPT`` summary rows
   of finished children and counts the rest.

Run from the repository root, with mptrace installed::

    python benchmarks/children.py
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

from _common import positive_int, print_header, print_targets

# mptrace and psutil are imported where they are used: spawn and forkserver
# children import this module again, and a plain child must not pay for them.

METHODS = [
    m
    for m in ("fork", "spawn", "forkserver")
    if m in multiprocessing.get_all_start_methods()
]


def child_logs_one_line(n: int) -> None:
    logging.getLogger("bench").info("child %d", n)


def _one(ctx: object, n: int = 0) -> None:
    p = ctx.Process(target=child_logs_one_line, args=(n,))  # type: ignore[attr-defined]
    p.start()
    p.join()


def _plain(method: str, count: int) -> float:
    ctx = multiprocessing.get_context(method)
    _one(ctx)  # the fork server starts, as in any program, outside the clock
    t0 = time.perf_counter()
    for n in range(count):
        _one(ctx, n)
    return (time.perf_counter() - t0) / count


def _mptrace(method: str, count: int, folder: str) -> float:
    import mptrace

    path = os.path.join(folder, f"children-{method}.jsonl")
    with mptrace.init(exporters=[f"jsonl:{path}"]):
        ctx = mptrace.get_context(method)
        _one(ctx)
        t0 = time.perf_counter()
        for n in range(count):
            _one(ctx, n)
        elapsed = time.perf_counter() - t0
    os.unlink(path)
    return elapsed / count


def _run_alone(method: str, kind: str, count: int, folder: str) -> float:
    """One measurement in a fresh interpreter, as a program would run."""
    out = subprocess.run(
        [sys.executable, __file__, "--alone", method, kind, str(count), folder],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def start_costs(count: int, repeat: int, folder: str) -> list[tuple[str, float, float]]:
    rows = []
    for method in METHODS:
        plain, traced = [], []
        for _ in range(repeat):
            plain.append(_run_alone(method, "plain", count, folder))
            traced.append(_run_alone(method, "mptrace", count, folder))
        rows.append((method, min(plain), min(traced)))
    return rows


def listener_memory(many: int, folder: str) -> list[tuple[int, float]]:
    import psutil

    import mptrace

    path = os.path.join(folder, "many.jsonl")
    marks = sorted({0, many // 4, many // 2, many})
    points = []
    ctx = mptrace.get_context("fork")
    with mptrace.init(exporters=[f"jsonl:{path}"]) as session:
        listener = psutil.Process(session.listener_pid)
        for n in range(many + 1):
            if n in marks:
                session.force_flush()
                points.append((n, listener.memory_info().rss / 2**20))
            if n < many:
                p = ctx.Process(target=child_logs_one_line, args=(n,))
                p.start()
                p.join()
    os.unlink(path)
    return points


def main() -> None:
    if sys.argv[1:2] == ["--alone"]:
        method, kind, count, folder = sys.argv[2:6]
        logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])
        if kind == "plain":
            print(_plain(method, int(count)))
        else:
            print(_mptrace(method, int(count), folder))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=positive_int, default=20)
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--many", type=positive_int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])
    print_header("What each child costs", sys.argv[0], ", ".join(METHODS))
    with tempfile.TemporaryDirectory() as folder:
        costs = start_costs(args.children, args.repeat, folder)
        print(
            f"\n## Start cost per child ({args.children} in a row, best of {args.repeat})\n"
        )
        print("| start method | stdlib ms/child | mptrace ms/child | ratio |")
        print("|---|---:|---:|---:|")
        for method, plain, traced in costs:
            print(
                f"| {method} | {plain * 1e3:.1f} | {traced * 1e3:.1f} | {traced / plain:.2f}× |"
            )
        points = listener_memory(args.many, folder)
    from mptrace._listener.proctable import ROWS_KEPT

    print(
        f"\n## Listener memory over {args.many} fork children (ROWS_KEPT={ROWS_KEPT})\n"
    )
    print("| children so far | listener RSS MiB |")
    print("|---:|---:|")
    for n, rss in points:
        print(f"| {n} | {rss:.1f} |")
    quarter = next(rss for n, rss in points if n == args.many // 4)
    growth = points[-1][1] - quarter
    print_targets(
        [
            (
                growth < 2.0,
                f"listener RSS flat from {args.many // 4} to {args.many} children: "
                f"+{growth:.1f} MiB (target < 2 MiB)",
            )
        ]
    )


if __name__ == "__main__":
    main()
