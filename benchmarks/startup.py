"""Benchmark: what a short program pays for mptrace before and after its work.

Each row runs a whole program in a fresh interpreter, with mptrace and as the
plain program, alternating, ``--repeat`` times (default 5), and keeps the
best of each:

* **empty session**: ``mptrace.init(exporters=["jsonl:FILE"])`` then
  ``shutdown()``, against ``python -c pass``;
* **8 children**, under fork, spawn and forkserver: a program that starts 8
  children, each logging one line, and joins them; plain
  ``multiprocessing`` with ``logging`` against the same with
  ``mptrace.init(exporters=["jsonl:FILE"])`` and ``mptrace.get_context``.
  Wall time, and CPU seconds of the whole process tree (``os.wait4`` on the
  program, whose children and listener it waits for);
* **import**: ``python -X importtime -c "import mptrace"``, cumulative
  microseconds of the top-level import, against ``import logging``.

Targets (from the issue that asked for this): empty session within +0.08 s
of ``python -c pass``; 8 fork children within 2× the plain program; 8 spawn
children within 1.4× (wall and CPU); ``import mptrace`` within 25 ms.

Run from the repository root, with mptrace installed::

    python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time

from _common import positive_int, print_header, print_targets

CHILDREN = textwrap.dedent(
    """
    import logging, multiprocessing, sys
    {setup}

    def work(n):
        logging.getLogger("bench").warning("child %d", n)

    if __name__ == "__main__":
        {start}
        ctx = {context}
        children = [ctx.Process(target=work, args=(n,)) for n in range(8)]
        for p in children:
            p.start()
        for p in children:
            p.join()
        {stop}
    """
)


def _program(method: str, traced: bool, path: str) -> str:
    if traced:
        return CHILDREN.format(
            setup="import mptrace",
            start=f"session = mptrace.init(exporters=['jsonl:{path}'])",
            context=f"mptrace.get_context({method!r})",
            stop="session.shutdown()",
        )
    return CHILDREN.format(
        setup="",
        start="logging.basicConfig(stream=sys.stderr)",
        context=f"multiprocessing.get_context({method!r})",
        stop="pass",
    )


def _run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of the whole tree of one program."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{args} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def _best(args_a: list[str], args_b: list[str], repeat: int) -> tuple:
    a, b = [], []
    for _ in range(repeat):
        a.append(_run(args_a))
        b.append(_run(args_b))
    return (
        min(w for w, _ in a),
        min(c for _, c in a),
        min(w for w, _ in b),
        min(c for _, c in b),
    )


def _import_us(module: str, repeat: int) -> int:
    best = None
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in out.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
            if m and m.group(2) == module:
                us = int(m.group(1))
                best = us if best is None else min(best, us)
    assert best is not None, f"no import time for {module}"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive_int, default=5)
    args = parser.parse_args()
    methods = [
        m
        for m in ("fork", "spawn", "forkserver")
        if m in __import__("multiprocessing").get_all_start_methods()
    ]
    print_header("Start-up costs", sys.argv[0], ", ".join(methods))
    rows, targets = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run.jsonl")
        empty = f"import mptrace; mptrace.init(exporters=['jsonl:{path}']).shutdown()"
        plain_w, plain_c, mp_w, mp_c = _best(
            [sys.executable, "-c", "pass"], [sys.executable, "-c", empty], args.repeat
        )
        rows.append(("empty session", plain_w, mp_w, plain_c, mp_c))
        targets.append(
            (
                mp_w - plain_w <= 0.08,
                f"empty session +{mp_w - plain_w:.3f} s over `python -c pass` "
                "(target ≤ +0.08 s)",
            )
        )
        for method in methods:
            files = []
            for traced in (False, True):
                script = os.path.join(folder, f"{method}-{traced}.py")
                with open(script, "w") as f:
                    f.write(_program(method, traced, path))
                files.append([sys.executable, script])
            plain_w, plain_c, mp_w, mp_c = _best(files[0], files[1], args.repeat)
            rows.append((f"8 {method} children", plain_w, mp_w, plain_c, mp_c))
            bound = 2.0 if method == "fork" else 1.4
            targets.append(
                (
                    mp_w / plain_w <= bound,
                    f"8 {method} children: {mp_w / plain_w:.2f}× wall "
                    f"(target ≤ {bound}×)",
                )
            )
            if method == "spawn":
                targets.append(
                    (
                        mp_c / plain_c <= bound,
                        f"8 spawn children: {mp_c / plain_c:.2f}× CPU "
                        f"(target ≤ {bound}×)",
                    )
                )
    logging_us = _import_us("logging", args.repeat)
    mptrace_us = _import_us("mptrace", args.repeat)
    print("\n| program | plain s | mptrace s | ratio | plain CPU s | mptrace CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, pw, mw, pc, mc in rows:
        print(
            f"| {name} | {pw:.3f} | {mw:.3f} | {mw / pw:.2f}× | {pc:.3f} | {mc:.3f} |"
        )
    print(
        f"| `import` (cumulative) | logging {logging_us / 1000:.1f} ms | "
        f"mptrace {mptrace_us / 1000:.1f} ms | {mptrace_us / logging_us:.1f}× | | |"
    )
    targets.append(
        (
            mptrace_us <= 25_000,
            f"import mptrace {mptrace_us / 1000:.1f} ms (target ≤ 25 ms)",
        )
    )
    print_targets(targets)


if __name__ == "__main__":
    main()
