"""Benchmark: mptrace's funnel against the stdlib multi-process logging recipe.

Both tools take the same records from child processes to one JSON-lines file
with the same keys (kind, ts, level, logger, event, pid, ppid, process, seq),
each line written by one JSON encoding of a dict:

* mptrace: ``mptrace.init(exporters=["jsonl:FILE"])``; children started
  through ``mptrace.get_context(method)`` log with plain stdlib ``logging``,
  and the listener process writes the file.
* stdlib recipe: each child puts a ``logging.handlers.QueueHandler`` on a
  ``multiprocessing.Queue`` on its root logger; a ``QueueListener`` in the
  parent hands the records to a handler that writes ``json.dumps(dict)`` lines.

Measured, in one run on one machine:

1. End-to-end records per second from 2 and from 8 children (and, at scale,
   from 64 and 256 children logging 1,000 records each, with the listener's
   peak resident set read from ``/proc`` before it stops), each calling
   ``logger.info("record %d", i)`` N times: the clock runs from starting the
   children until every record is in the file (mptrace: children joined and
   ``session.shutdown()`` returned; stdlib: children joined and
   ``QueueListener.stop()`` returned). Listener start-up is not timed. The
   lines really in the file are counted ("delivered").
2. The child-side cost of one logging call: one child times each of
   ``--calls`` ``logger.info`` calls with ``time.perf_counter_ns``, after a
   short untimed warm-up; the median and 99th percentile are reported.

Each measurement runs ``--repeat`` times, alternating the two tools; the best
run is reported (highest rate; lowest median, with that run's p99) and
"delivered" is the fewest records found over all runs. Run from the
repository root, with mptrace installed::

    python benchmarks/funnel.py
    python benchmarks/funnel.py --start-method spawn --repeat 5
    python benchmarks/funnel.py --records-2 200000 --records-8 50000

Progress goes to stderr; the report (a Markdown table) to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import positive_int, print_header, print_targets

import mptrace

LOGGER = "bench"
WARMUP_CALLS = 200
#: Records per child in the runs at scale (--scale).
SCALE_RECORDS = 1_000
#: Seconds allowed to start-up and tear-down, on top of the per-record allowance.
BASE_TIMEOUT = 60.0
#: The slowest rate (records/s) a run may have before it is stopped as hung.
SLOWEST_RATE = 2_000

# Targets, from the 2-children throughput run and the call-cost run.
TARGET_SPEEDUP = 3.0
TARGET_RATE = 100_000
TARGET_COST_RATIO = 1.15


# -- child processes -----------------------------------------------------------


def _use_queue(queue: Any) -> None:
    """The stdlib recipe's child side: the root logger writes to *queue*."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(queue))
    root.setLevel(logging.INFO)


def log_child(count: int, queue: Any = None) -> None:
    """Log *count* records; with *queue*, through the stdlib recipe."""
    if queue is not None:
        _use_queue(queue)
    logger = logging.getLogger(LOGGER)
    for i in range(count):
        logger.info("record %d", i)


def timed_child(conn: Any, calls: int, queue: Any = None) -> None:
    """Time each of *calls* logging calls; send (median, p99) in µs on *conn*."""
    if queue is not None:
        _use_queue(queue)
    logger = logging.getLogger(LOGGER)
    for i in range(WARMUP_CALLS):
        logger.info("warm-up %d", i)
    clock = time.perf_counter_ns
    samples = []
    for i in range(calls):
        start = clock()
        logger.info("record %d", i)
        samples.append(clock() - start)
    conn.send(summarize(samples))
    conn.close()


def summarize(samples_ns: list[int]) -> tuple[float, float]:
    """(median, 99th percentile) of *samples_ns*, in microseconds."""
    p99 = statistics.quantiles(samples_ns, n=100)[98]
    return statistics.median(samples_ns) / 1000, p99 / 1000


# -- the parent: starting, joining, counting -----------------------------------


def timeout_for(records: int) -> float:
    return BASE_TIMEOUT + records / SLOWEST_RATE


def start_children(
    ctx: Any, target: Callable[..., None], args: tuple[Any, ...], count: int
) -> list[Any]:
    procs = [ctx.Process(target=target, args=args) for _ in range(count)]
    for proc in procs:
        proc.start()
    return procs


def join_all(procs: list[Any], timeout: float) -> None:
    """Join every child within *timeout* seconds; kill and raise otherwise."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for proc in hung:
        proc.kill()
        proc.join(5)
    if hung:
        raise RuntimeError(
            f"{len(hung)} children did not finish within {timeout:.0f} s"
        )
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"children failed with exit codes {failed}")


def receive(conn: Any, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"the timed child sent nothing within {timeout:.0f} s")
    return conn.recv()


def count_delivered(path: str) -> int:
    """Benchmark records in the JSON-lines file at *path*; removes the file."""
    delivered = 0
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                if json.loads(line).get("logger") == LOGGER:
                    delivered += 1
    except FileNotFoundError:
        pass
    finally:
        if os.path.exists(path):
            os.remove(path)
    return delivered


# -- the stdlib recipe's parent side --------------------------------------------


class JsonLinesHandler(logging.Handler):
    """Writes each record as one ``json.dumps`` line with mptrace's keys."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.file = open(path, "a", encoding="utf-8", buffering=1024 * 1024)
        self.ppid = os.getpid()
        self.seqs: dict[int | None, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        seq = self.seqs[record.process] = self.seqs.get(record.process, 0) + 1
        event = {
            "kind": "log",
            "ts": int(record.created * 1_000_000_000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,
            "ppid": self.ppid,
            "process": record.processName,
            "seq": seq,
        }
        self.file.write(json.dumps(event) + "\n")

    def close(self) -> None:
        self.file.close()
        super().close()


class StdlibFunnel:
    """A ``multiprocessing.Queue`` drained by a ``QueueListener`` into a file."""

    def __init__(self, ctx: Any, path: str) -> None:
        self.queue = ctx.Queue()
        self.handler = JsonLinesHandler(path)
        self.listener = logging.handlers.QueueListener(self.queue, self.handler)
        self.listener.start()

    def stop(self, timeout: float) -> None:
        """``QueueListener.stop()``, given at most *timeout* seconds."""
        stopper = threading.Thread(target=self.listener.stop, daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            raise RuntimeError(f"QueueListener.stop() took over {timeout:.0f} s")

    def close(self) -> None:
        self.queue.close()
        self.queue.join_thread()
        self.handler.close()


# -- one run of each measurement --------------------------------------------------


@dataclass
class Throughput:
    seconds: float
    delivered: int
    expected: int
    listener_peak_mib: float | None = None  # mptrace's listener, VmHWM

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds


@dataclass
class CallCost:
    median_us: float
    p99_us: float
    delivered: int
    expected: int


def stdlib_throughput(method: str, children: int, each: int, path: str) -> Throughput:
    ctx = multiprocessing.get_context(method)
    timeout = timeout_for(children * each)
    funnel = StdlibFunnel(ctx, path)
    try:
        start = time.perf_counter()
        procs = start_children(ctx, log_child, (each, funnel.queue), children)
        join_all(procs, timeout)
        funnel.stop(timeout)
        seconds = time.perf_counter() - start
    finally:
        funnel.close()
    return Throughput(seconds, count_delivered(path), children * each)


def mptrace_throughput(method: str, children: int, each: int, path: str) -> Throughput:
    ctx = mptrace.get_context(method)
    session = mptrace.init(exporters=[f"jsonl:{path}"], level="INFO")
    try:
        start = time.perf_counter()
        procs = start_children(ctx, log_child, (each,), children)
        join_all(procs, timeout_for(children * each))
        session.force_flush()  # every record read: the listener's peak is in
        peak = listener_peak_mib(session.listener_pid)
        session.shutdown()
        seconds = time.perf_counter() - start
    finally:
        session.shutdown()  # idempotent; stops the listener after a failure
    return Throughput(seconds, count_delivered(path), children * each, peak)


def listener_peak_mib(pid: int | None) -> float | None:
    """The listener's peak resident set (``VmHWM``), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stdlib_call_cost(method: str, calls: int, path: str) -> CallCost:
    ctx = multiprocessing.get_context(method)
    timeout = timeout_for(calls)
    funnel = StdlibFunnel(ctx, path)
    try:
        recv, send = ctx.Pipe(duplex=False)
        procs = start_children(ctx, timed_child, (send, calls, funnel.queue), 1)
        send.close()
        median, p99 = receive(recv, timeout)
        join_all(procs, timeout)
        funnel.stop(timeout)
    finally:
        funnel.close()
    expected = WARMUP_CALLS + calls
    return CallCost(median, p99, count_delivered(path), expected)


def mptrace_call_cost(method: str, calls: int, path: str) -> CallCost:
    ctx = mptrace.get_context(method)
    timeout = timeout_for(calls)
    session = mptrace.init(exporters=[f"jsonl:{path}"], level="INFO")
    try:
        recv, send = ctx.Pipe(duplex=False)
        procs = start_children(ctx, timed_child, (send, calls), 1)
        send.close()
        median, p99 = receive(recv, timeout)
        join_all(procs, timeout)
    finally:
        session.shutdown()
    expected = WARMUP_CALLS + calls
    return CallCost(median, p99, count_delivered(path), expected)


# -- repeating and reporting -------------------------------------------------------


@dataclass
class Results:
    """Every run of every measurement, by (measurement, tool)."""

    throughput: dict[tuple[int, str], list[Throughput]]
    cost: dict[str, list[CallCost]]

    def best_rate(self, children: int, tool: str) -> Throughput:
        return max(self.throughput[children, tool], key=lambda r: r.rate)

    def best_cost(self, tool: str) -> CallCost:
        return min(self.cost[tool], key=lambda r: r.median_us)

    def fewest_delivered(self, children: int, tool: str) -> Throughput:
        return min(self.throughput[children, tool], key=lambda r: r.delivered)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace, folder: str) -> Results:
    sizes = {2: args.records_2, 8: args.records_8}
    sizes.update({n: SCALE_RECORDS for n in args.scale})
    results = Results(
        throughput={(n, t): [] for n in sizes for t in ("stdlib", "mptrace")},
        cost={"stdlib": [], "mptrace": []},
    )
    path = os.path.join(folder, "records.jsonl")
    throughput = {"stdlib": stdlib_throughput, "mptrace": mptrace_throughput}
    cost = {"stdlib": stdlib_call_cost, "mptrace": mptrace_call_cost}
    for rep in range(1, args.repeat + 1):
        for children, each in sizes.items():
            for tool, measure in throughput.items():
                run = measure(args.start_method, children, each, path)
                results.throughput[children, tool].append(run)
                progress(
                    f"[{rep}/{args.repeat}] {children} children, {tool}: "
                    f"{run.rate:,.0f} records/s, {run.delivered:,}/{run.expected:,}"
                )
        for tool, measure_cost in cost.items():
            one = measure_cost(args.start_method, args.calls, path)
            results.cost[tool].append(one)
            progress(
                f"[{rep}/{args.repeat}] call cost, {tool}: median "
                f"{one.median_us:.2f} µs, p99 {one.p99_us:.2f} µs"
            )
    return results


def delivered_cell(runs: list[Throughput | CallCost]) -> str:
    worst = min(runs, key=lambda r: r.delivered)
    pct = 100 * worst.delivered / worst.expected
    return f"{worst.delivered:,}/{worst.expected:,} ({pct:.0f} %)"


def table(results: Results, args: argparse.Namespace) -> list[str]:
    rows = [
        "| measurement | stdlib recipe | mptrace | mptrace ÷ stdlib "
        "| delivered, stdlib | delivered, mptrace |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    scale = [(n, SCALE_RECORDS) for n in args.scale]
    for children, each in [(2, args.records_2), (8, args.records_8), *scale]:
        std, mpt = (results.best_rate(children, t) for t in ("stdlib", "mptrace"))
        rows.append(
            f"| records/s, {children} children × {each:,} (higher is better) "
            f"| {std.rate:,.0f} | {mpt.rate:,.0f} | {mpt.rate / std.rate:.2f}× "
            f"| {delivered_cell(results.throughput[children, 'stdlib'])} "
            f"| {delivered_cell(results.throughput[children, 'mptrace'])} |"
        )
    std_cost, mpt_cost = results.best_cost("stdlib"), results.best_cost("mptrace")
    std_cell = delivered_cell(results.cost["stdlib"])  # type: ignore[arg-type]
    mpt_cell = delivered_cell(results.cost["mptrace"])  # type: ignore[arg-type]
    for label, attr in (("median", "median_us"), ("p99", "p99_us")):
        std_us, mpt_us = getattr(std_cost, attr), getattr(mpt_cost, attr)
        rows.append(
            f"| child call {label}, µs (lower is better) | {std_us:.2f} "
            f"| {mpt_us:.2f} | {mpt_us / std_us:.2f}× | {std_cell} | {mpt_cell} |"
        )
    rows += [
        "",
        "| children | mptrace listener peak RSS, MiB (the most over all runs) |",
        "|---:|---:|",
    ]
    for children in (2, 8, *args.scale):
        peaks = [
            r.listener_peak_mib
            for r in results.throughput[children, "mptrace"]
            if r.listener_peak_mib is not None
        ]
        rows.append(
            f"| {children} | {max(peaks):.1f} |" if peaks else f"| {children} | - |"
        )
    return rows


def targets(results: Results) -> list[tuple[bool, str]]:
    std2, mpt2 = (results.best_rate(2, t) for t in ("stdlib", "mptrace"))
    speedup = mpt2.rate / std2.rate
    lossless = all(
        r.delivered == r.expected
        for (_, tool), runs in results.throughput.items()
        if tool == "mptrace"
        for r in runs
    )
    cost_ratio = (
        results.best_cost("mptrace").median_us / results.best_cost("stdlib").median_us
    )
    return [
        (
            speedup >= TARGET_SPEEDUP,
            f"mptrace records/s ≥ {TARGET_SPEEDUP:g}× stdlib, 2 children: "
            f"{speedup:.2f}×",
        ),
        (
            mpt2.rate >= TARGET_RATE,
            f"mptrace ≥ {TARGET_RATE:,} records/s, 2 children: {mpt2.rate:,.0f}",
        ),
        (lossless, "mptrace delivered 100 % in every throughput run"),
        (
            cost_ratio <= TARGET_COST_RATIO,
            f"mptrace child call median ≤ {TARGET_COST_RATIO:g}× stdlib's: "
            f"{cost_ratio:.2f}×",
        ),
    ]


def report(results: Results, args: argparse.Namespace) -> None:
    print_header("mptrace funnel benchmark", "benchmarks/funnel.py", args.start_method)
    print(
        f"- best of {args.repeat} runs: highest rate; lowest median (its p99 "
        "from the same run); delivered = fewest records found in the file "
        "over all runs\n"
    )
    print("\n".join(table(results, args)))
    print_targets(targets(results))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        default="fork",
        help="how children are started (default: fork)",
    )
    parser.add_argument(
        "--records-2",
        type=positive_int,
        default=50_000,
        help="records per child with 2 children (default: 50,000)",
    )
    parser.add_argument(
        "--records-8",
        type=positive_int,
        default=12_500,
        help="records per child with 8 children (default: 12,500)",
    )
    parser.add_argument(
        "--scale",
        type=lambda text: [positive_int(n) for n in text.split(",") if n],
        default=[64, 256],
        help=f"more runs with this many children, {SCALE_RECORDS:,} records "
        "each (default: 64,256; '' for none)",
    )
    parser.add_argument(
        "--calls",
        type=positive_int,
        default=20_000,
        help="logging calls timed one by one in the child (default: 20,000)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="runs of each measurement; the best is reported (default: 3)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="mptrace-bench-") as folder:
        results = run_all(args, folder)
    report(results, args)


if __name__ == "__main__":
    main()
