"""Benchmark: what a Python program started with subprocess pays to join the run.

From one process, ``--repeat`` times (default 10) each, alternating: a
``python -c`` that logs one line, started with ``subprocess.run`` while a
session runs with ``subprocesses`` on (the program joins), while one runs
with it off, and with no session at all. Median wall seconds of each start,
from ``subprocess.run`` to its return.

There is no target: a program that joins pays what a spawn child pays to
join (importing mptrace and the OpenTelemetry SDK, one connection); the
table says how much that is here.

Run from the repository root, with mptrace installed::

    python benchmarks/stages.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import positive_int, print_header

import mptrace

PROGRAM = "import logging; logging.getLogger('bench').warning('one line')"


def _start() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", PROGRAM], check=True, capture_output=True)
    return time.perf_counter() - t0


def _under(joins: bool | None, repeat: int, folder: str) -> list[float]:
    if joins is None:
        return [_start() for _ in range(repeat)]
    path = os.path.join(folder, f"run-{joins}.jsonl")
    with mptrace.init(exporters=[f"jsonl:{path}"], subprocesses=joins):
        return [_start() for _ in range(repeat)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--repeat", type=positive_int, default=10)
    args = parser.parse_args()
    print_header(
        "A Python program started with subprocess", "benchmarks/stages.py", "-"
    )
    rows = {"joins the run": True, "session, subprocesses=False": False}
    rows["no session"] = None
    with tempfile.TemporaryDirectory() as folder:
        times = {
            name: _under(joins, args.repeat, folder) for name, joins in rows.items()
        }
    print("\n| program started | median s | min s |\n| --- | --- | --- |")
    for name, found in times.items():
        print(f"| {name} | {statistics.median(found):.3f} | {min(found):.3f} |")


if __name__ == "__main__":
    main()
