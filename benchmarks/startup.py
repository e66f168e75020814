"""Benchmark: what a short program pays for mptrace before and after its work.

Each row runs a whole program in a fresh interpreter, with mptrace and as the
plain program, alternating, ``--repeat`` times (default 7), and reports the
median of each:

* **empty session**: ``mptrace.init(exporters=["jsonl:FILE"])`` then
  ``shutdown()``, against ``python -c pass``;
* **8 children**, under fork, spawn and forkserver: a program that starts 8
  children, each logging one line, and joins them; plain
  ``multiprocessing`` with ``logging`` against the same with
  ``mptrace.init(exporters=["jsonl:FILE"])`` and ``mptrace.get_context``.
  Wall time, and CPU seconds of the whole process tree (``os.wait4`` on the
  program, whose children and listener it waits for). The cost of one child
  is the program's time less that of its empty counterpart (``python -c
  pass``, or the empty session), over 8;
* **import**: ``python -X importtime -c "import mptrace"``, cumulative
  microseconds of the top-level import, against ``import logging``.

Each mptrace run is also profiled: with ``MPTRACE_PROFILE=FILE`` the owner
and the listener note when each phase of the session's start and end ends
(``mptrace._schema.profile``), and the program wraps the stream's connect to
time its first handshake. The table gives each phase's median, in ms.

It runs in two environments: the one it runs in, and a venv with ~150
ordinary packages (``_bigenv.PACKAGES``) that it makes once into a cache
folder (``--big-env PATH`` to use or make one elsewhere; ``--no-big-env`` to
skip it). What grows with the number of installed packages shows there.

Targets, in the bigger environment: empty session within +0.08 s of
``python -c pass``; 8 fork children within 2× the plain program; 8 spawn and
8 forkserver children within 1.4× (wall; and CPU for spawn); ``import
mptrace`` within 25 ms.

Run from the repository root, with mptrace installed::

    python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import _bigenv
from _common import positive_int, print_header, print_targets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Times the first connect of the owner's stream, as two profile marks.
HANDSHAKE = textwrap.dedent(
    """
    from mptrace._participant import stream as _stream
    from mptrace._schema import profile as _profile
    _connect = _stream.Stream._connect
    def _timed(self):
        _profile.mark("<handshake")
        _connect(self)
        _profile.mark(">handshake")
        _stream.Stream._connect = _connect
    _stream.Stream._connect = _timed
    """
)

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
            setup="import mptrace\n" + HANDSHAKE,
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


def _run(args: list[str], profile: str | None = None) -> tuple[float, float, dict]:
    """Wall and CPU seconds of the whole tree of one program, and its phases."""
    env = dict(os.environ)
    if profile:
        env["MPTRACE_PROFILE"] = profile
        if os.path.exists(profile):
            os.unlink(profile)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    t1 = time.perf_counter()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args} exited with {os.waitstatus_to_exitcode(status)}")
    phases = _phases(profile, t0, t1) if profile else {}
    return t1 - t0, usage.ru_utime + usage.ru_stime, phases


def _phases(path: str, t0: float, t1: float) -> dict[str, float]:
    """Each phase's seconds, from the marks of the owner and of the listener."""
    sides = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            sides[record["side"]] = record["marks"]
    out: dict[str, float] = {}
    owner = sides.get("owner", [])
    last = t0
    for name, at in owner:
        if name == "<handshake":
            out["first handshake"] = -at
        elif name == ">handshake":
            out["first handshake"] = out.get("first handshake", 0.0) + at
        else:
            out[name] = out.get(name, 0.0) + at - last
            last = at
    out["exit"] = t1 - last
    started = dict(owner).get("listener start")
    last = started
    for name, at in sides.get("listener", []):
        if last is not None:
            out[name] = at - last
        last = at
    return out


#: The owner's phases, then the listener's, as the table lists them.
PHASES = [
    ("import", "interpreter start, `import mptrace`, `mptrace.init`'s module"),
    ("listener start", "session folder, socket, the listener's Popen"),
    ("options", "the rest of mptrace imported, the configuration checked"),
    ("own install", "the owner joins: logging, structlog, tracer provider"),
    ("listener ready", "waiting for the listener's `ok`"),
    ("run span", "the run's span started"),
    ("instrumentation", "the stdlib's multiprocessing instrumented"),
    ("program", "the program's own work (its children)"),
    ("end sent", "exits seen, run span ended, shutdown frame sent"),
    ("listener exit", "waiting for the listener to drain and exit"),
    ("end", "the session folder removed"),
    ("exit", "the interpreter's exit"),
    ("first handshake", "the owner's first connect (within the above)"),
    ("listener imports", "listener: interpreter start and its imports"),
    ("listener sinks", "listener: configuration read, sinks built"),
    ("listener drain", "listener: the session, to the end of the drain"),
    ("listener finish", "listener: sinks flushed and closed"),
]


def _measure(a: list[str], b: list[str], repeat: int, profile: str) -> tuple:
    """Medians of *a* (plain) and *b* (mptrace, profiled), alternating."""
    ra, rb = [], []
    for _ in range(repeat):
        ra.append(_run(a))
        rb.append(_run(b, profile))
    phases = {
        name: statistics.median(r[2].get(name, 0.0) for r in rb) for name, _ in PHASES
    }
    med = statistics.median
    return (
        med(w for w, _, _ in ra),
        med(w for w, _, _ in rb),
        med(c for _, c, _ in ra),
        med(c for _, c, _ in rb),
        phases,
    )


def _import_us(python: str, module: str, repeat: int) -> int:
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [python, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in out.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
            if m and m.group(2) == module:
                times.append(int(m.group(1)))
    assert times, f"no import time for {module}"
    return int(statistics.median(times))


def _environment(python: str, env: str, repeat: int, methods: list[str]) -> list:
    """Measure every row with *python*; print the tables; return the targets."""
    packages = _bigenv.count_packages(python)
    print(f"\n## {env}: {packages} packages (`{python}`)\n")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run.jsonl")
        profile = os.path.join(folder, "profile.jsonl")
        empty = (
            "import mptrace\n" + HANDSHAKE + "\n"
            f"mptrace.init(exporters=['jsonl:{path}']).shutdown()"
        )
        rows.append(
            (
                "empty session",
                *_measure(
                    [python, "-c", "pass"], [python, "-c", empty], repeat, profile
                ),
            )
        )
        for method in methods:
            files = []
            for traced in (False, True):
                script = os.path.join(folder, f"{method}-{traced}.py")
                with open(script, "w") as f:
                    f.write(_program(method, traced, path))
                files.append([python, script])
            rows.append(
                (f"8 {method} children", *_measure(files[0], files[1], repeat, profile))
            )
    logging_us = _import_us(python, "logging", repeat)
    mptrace_us = _import_us(python, "mptrace", repeat)
    print(
        "| program | plain s | mptrace s | ratio | plain CPU s | mptrace CPU s | per child, plain ms | per child, mptrace ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base_plain, base_mp = rows[0][1], rows[0][2]
    for name, pw, mw, pc, mc, _ in rows:
        per = ""
        if name != "empty session":
            per = (
                f"{(pw - base_plain) / 8 * 1000:.1f} | {(mw - base_mp) / 8 * 1000:.1f}"
            )
        else:
            per = " | "
        print(
            f"| {name} | {pw:.3f} | {mw:.3f} | {mw / pw:.2f}× | {pc:.3f} | {mc:.3f} | {per} |"
        )
    print(
        f"| `import` (cumulative) | logging {logging_us / 1000:.1f} ms | "
        f"mptrace {mptrace_us / 1000:.1f} ms | {mptrace_us / logging_us:.1f}× | | | | |"
    )
    print(
        "\nPhases of the mptrace runs, median ms (the owner's in order, then the listener's):\n"
    )
    print("| phase | " + " | ".join(r[0] for r in rows) + " | what |")
    print("|---|" + "---:|" * len(rows) + "---|")
    for phase, what in PHASES:
        cells = " | ".join(f"{r[5][phase] * 1000:.1f}" for r in rows)
        print(f"| {phase} | {cells} | {what} |")
    targets = []
    empty_over = rows[0][2] - rows[0][1]
    targets.append(
        (
            empty_over <= 0.08,
            f"{env}: empty session +{empty_over:.3f} s over `python -c pass` (target ≤ +0.08 s)",
        )
    )
    for row in rows[1:]:
        label, pw, mw, pc, mc = row[:5]
        bound = 2.0 if "fork " in label else 1.4
        targets.append(
            (
                mw / pw <= bound,
                f"{env}: {label}: {mw / pw:.2f}× wall (target ≤ {bound}×)",
            )
        )
        if "spawn" in label:
            targets.append(
                (
                    mc / pc <= bound,
                    f"{env}: {label}: {mc / pc:.2f}× CPU (target ≤ {bound}×)",
                )
            )
    targets.append(
        (
            mptrace_us <= 25_000,
            f"{env}: import mptrace {mptrace_us / 1000:.1f} ms (target ≤ 25 ms)",
        )
    )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive_int, default=7)
    parser.add_argument(
        "--big-env",
        default=_bigenv.default_path(),
        help="the venv with ~150 packages: used if there, else made there "
        "(default: %(default)s)",
    )
    parser.add_argument("--no-big-env", action="store_true")
    args = parser.parse_args()
    methods = [
        m
        for m in ("fork", "spawn", "forkserver")
        if m in __import__("multiprocessing").get_all_start_methods()
    ]
    print_header("Start-up costs", sys.argv[0], ", ".join(methods))
    envs = [("this environment", sys.executable)]
    if not args.no_big_env:
        took = _bigenv.ensure(args.big_env, REPO)
        made = "reused" if took is None else f"made in {took:.0f} s"
        print(f"- bigger environment: `{args.big_env}` ({made})")
        envs.append(("bigger environment", _bigenv.python_of(args.big_env)))
    targets = []
    for name, python in envs:
        targets = _environment(python, name, args.repeat, methods)
    print_targets(targets)  # the last environment's: the bigger one


if __name__ == "__main__":
    main()
