"""Benchmark: what an uncontended operation on multiprocessing's primitives costs
under mptrace, against the plain stdlib, measured in the same run.

Each row is timed in a fresh interpreter, once as the plain program and once
under ``mptrace.init(exporters=["jsonl:FILE"])`` (which instruments the
stdlib, so the primitive, made after it, records its long waits), alternating,
``--repeat`` times (default 9). An interpreter runs the operation in a loop
of ``--ops`` iterations five times and keeps its fastest loop, less an empty
loop's time; the table gives the median over the interpreters, in ns per
operation, and mptrace's over plain.

A row is a name, the setup (``ctx`` is the context of ``--start-method``) and
the statement timed: adding one (a queue's ``put``/``get``) is one line in
ROWS.

Target: every row within 1.2× of plain.

Run from the repository root, with mptrace installed::

    python benchmarks/ipc.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from _common import positive_int, print_header, print_targets

#: Setup of a row timed inside a span of the work: ``put`` calls its
#: argument from a module of the program's, as a program's code does.
IN_SPAN = (
    "\nfrom opentelemetry import trace"
    "\nspan = trace.get_tracer('bench').start_span('work')"
    "\nfrom opentelemetry import context"
    "\ntoken = context.attach(trace.set_span_in_context(span))"
    "\ndef put(f, x): f(x)"
)
#: name → (setup, statement timed).
ROWS: dict[str, tuple[str, str]] = {
    "`Lock` `acquire()` + `release()`": ("p = ctx.Lock()", "p.acquire(); p.release()"),
    "`with lock:`": ("p = ctx.Lock()", "with p: pass"),
    "`RLock` `acquire()` + `release()`": (
        "p = ctx.RLock()",
        "p.acquire(); p.release()",
    ),
    "`with rlock:`": ("p = ctx.RLock()", "with p: pass"),
    "`Semaphore` `acquire()` + `release()`": (
        "p = ctx.Semaphore(2)",
        "p.acquire(); p.release()",
    ),
    # A small item through a queue and a pipe: what the session adds to IPC
    # traffic (a tenth of the operations: each takes microseconds, not ns).
    "`SimpleQueue` `put(1)` + `get()`": ("q = ctx.SimpleQueue()", "q.put(1); q.get()"),
    "`Pipe` `send(1)` + `recv()`": ("a, b = ctx.Pipe()", "a.send(1); b.recv()"),
    # With MPTRACE_TRACE_IPC=1 (a row whose setup says TRACE_IPC): outside a
    # span items go as they are; inside one each carries the span's ids.
    "`SimpleQueue` `put(1)` + `get()`, traced IPC, outside a span": (
        "q = ctx.SimpleQueue()  # TRACE_IPC\ndef put(f, x): f(x)",
        "put(q.put, 1); q.get()",
    ),
    "`SimpleQueue` `put(1)` + `get()`, traced IPC, inside a span": (
        "q = ctx.SimpleQueue()  # TRACE_IPC" + IN_SPAN,
        "put(q.put, 1); q.get()",
    ),
    "`Pipe` `send(1)` + `recv()`, traced IPC, inside a span": (
        "a, b = ctx.Pipe()  # TRACE_IPC" + IN_SPAN,
        "put(a.send, 1); b.recv()",
    ),
}
#: Rows that run a tenth of ``--ops``: each takes microseconds, not ns.
SLOW = {name for name in ROWS if "Queue" in name or "Pipe" in name}
TARGET = 1.2

#: Run in a fresh interpreter: argv is mode, start method, ops, setup, statement.
CHILD = textwrap.dedent(
    """
    import multiprocessing, os, sys, tempfile, time
    mode, method, ops, setup, statement = sys.argv[1:6]
    ops = int(ops)
    if mode == "mptrace" and "TRACE_IPC" in setup:
        os.environ["MPTRACE_TRACE_IPC"] = "1"
    if mode == "mptrace":
        import mptrace
        folder = tempfile.mkdtemp()
        mptrace.init(exporters=["jsonl:" + os.path.join(folder, "run.jsonl")])
    ctx = multiprocessing.get_context(method)
    names = {"ctx": ctx}
    exec(setup, names)
    loop = compile(
        "def timed(n):\\n    for _ in range(n):\\n        " + statement + "\\n"
        "def empty(n):\\n    for _ in range(n):\\n        pass\\n",
        "<timed>", "exec",
    )
    exec(loop, names)
    clock = time.perf_counter_ns

    def best(func):
        times = []
        for _ in range(5):
            t = clock()
            func(ops)
            times.append(clock() - t)
        return min(times)

    names["timed"](ops // 10)  # warm up
    print((best(names["timed"]) - best(names["empty"])) / ops)
    """
)


def _one(mode: str, method: str, ops: int, setup: str, statement: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, method, str(ops), setup, statement],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=positive_int, default=9)
    parser.add_argument("--ops", type=positive_int, default=200_000)
    parser.add_argument(
        "--start-method", default="fork", choices=("fork", "spawn", "forkserver")
    )
    args = parser.parse_args()
    print_header(
        "Uncontended multiprocessing primitives: plain against mptrace",
        "benchmarks/ipc.py",
        args.start_method,
    )
    print(f"- {args.ops:,} operations a loop ({args.ops // 10:,} for a queue or "
          f"a pipe), best of 5 loops less an empty one; median of {args.repeat} "
          "interpreters each\n")  # fmt: skip
    print("| operation | plain ns | mptrace ns | ratio |")
    print("|---|---:|---:|---:|")
    targets = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TMPDIR"] = folder  # the sessions' JSON lines go away with it
        for name, (setup, statement) in ROWS.items():
            times: dict[str, list[float]] = {"plain": [], "mptrace": []}
            ops = args.ops // 10 if name in SLOW else args.ops
            for _ in range(args.repeat):
                for mode in times:
                    times[mode].append(
                        _one(mode, args.start_method, ops, setup, statement)
                    )
            plain = statistics.median(times["plain"])
            traced = statistics.median(times["mptrace"])
            ratio = traced / plain if plain > 0 else float("inf")
            print(f"| {name} | {plain:.0f} | {traced:.0f} | {ratio:.2f}× |", flush=True)
            targets.append((ratio <= TARGET, f"{name}: {ratio:.2f}× (≤ {TARGET}×)"))
    print_targets(targets)


if __name__ == "__main__":
    main()
