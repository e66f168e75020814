"""Compatibility: CPython's own multiprocessing and concurrent.futures tests, with and without ``mptrace run``.

``mptrace run`` promises that a program runs as it would under plain
``python``. The standard library's own test suites are the largest body of
multiprocessing code at hand that knows nothing of mptrace, so this script
runs each of their test files twice with regrtest, once as
``python -m test MODULE`` and once as ``python -m mptrace run -m test
MODULE``, both sequentially in one process (so the tests themselves run
inside the session), and compares every test's outcome.

It prints, per test file, the time of each run and its counts of passed,
failed, errored and skipped tests; what regrtest warned about (``Warning --``
lines: dangling threads or processes, a changed environment), with the test
that was running; and then the tests whose outcome differs: passed plain, but
failed, errored, hung or took much longer under mptrace. Each of those is then
run again alone, both ways, to tell a steady difference from one that needs
the tests before it (or is flaky). The exit status is 0 when no test differs
and 1 when some do.

A hang is a hang, not a stuck script: regrtest's ``--timeout`` ends a test file
that runs too long (its traceback says where), and a wall-clock timeout ends
the run's whole process group after that.

Run it with the Python whose tests to run, in an environment where mptrace is
installed (``pip install -e .[test]``)::

    python benchmarks/stdlib_compat.py                   # the four suites, ~15 min on 2 cores
    python benchmarks/stdlib_compat.py --quick           # a representative subset, 2 cores
    python benchmarks/stdlib_compat.py --suites test_multiprocessing_fork
    python benchmarks/stdlib_compat.py --python /path/to/python3.13

``--suites`` takes regrtest names: a package (``test_concurrent_futures``) is
split into its test files, a test file (``test_concurrent_futures.test_wait``)
is run alone. The logs and JUnit files of every run stay in ``--logs``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence

from _common import positive_int, print_header

DEFAULT_SUITES = (
    "test_concurrent_futures",
    "test_multiprocessing_fork",
    "test_multiprocessing_spawn",
    "test_multiprocessing_forkserver",
)
#: What --quick runs: one multiprocessing file, and the executor's main files.
QUICK_SUITES = (
    "test_multiprocessing_fork.test_processes",
    "test_concurrent_futures.test_process_pool",
    "test_concurrent_futures.test_shutdown",
    "test_concurrent_futures.test_thread_pool",
    "test_concurrent_futures.test_wait",
)
QUICK_CORES = 2
#: Outcomes that count as a test working.
GOOD = frozenset({"pass", "skip", "xfail"})
#: Outcomes a test can have; "hang" and "crash" come from a run that ended early.
STATUSES = ("pass", "fail", "error", "skip", "xfail", "xpass", "hang", "crash")

#: A verbose line that starts a test: ``test_x (test.mod.Class.test_x)``.
_START = re.compile(r"^(\w+) \((test\.[\w.]+)\)")
#: The outcome unittest prints after a test's description.
_OUTCOME = re.compile(
    r"(?:^|\.\.\. )(ok|FAIL|ERROR|skipped\b.*|expected failure|unexpected success)$"
)
_VERBOSE_STATUS = {
    "ok": "pass",
    "FAIL": "fail",
    "ERROR": "error",
    "expected failure": "xfail",
    "unexpected success": "xpass",
}
_WARNING = re.compile(r"Warning -- (.*)$")
#: What faulthandler prints when regrtest's --timeout ends a test file.
_TIMEOUT = re.compile(r"Timeout \(\d+:\d\d:\d\d\)!")
_ENV_CHANGED = re.compile(r"^(\S+) failed \(env changed\)")
#: A subtest's or a class fixture's id: ``test.m.C.test_x (i=1)``, ``setUpClass (test.m.C)``.
_SUFFIXED = re.compile(r"^(\S+) \((.*)\)$")


@dataclasses.dataclass
class Outcome:
    status: str
    seconds: float = 0.0
    #: The first lines of the error, or where a hung test was.
    detail: str = ""


@dataclasses.dataclass
class Run:
    """One test file run by regrtest, plain or under ``mptrace run``."""

    module: str
    traced: bool
    command: list[str]
    seconds: float = 0.0
    returncode: int | None = None
    #: "regrtest --timeout", "wall timeout", or "" when the run ended by itself.
    timeout: str = ""
    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    #: (the test running, or "after <last test>", the warning) in order.
    warnings: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    env_changed: bool = False
    #: Where a run that ended early was: a test's id, or "after <last test>".
    stuck_at: str = ""
    #: The main thread's innermost frames when regrtest's --timeout ended the run.
    stack: str = ""
    #: Whether regrtest wrote its JUnit file, which it does when it ends by itself.
    junit: bool = False
    #: Processes of the run's group still alive once its main process ended.
    leftovers: list[str] = dataclasses.field(default_factory=list)
    log: str = ""

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status in statuses)

    def counts(self) -> str:
        """passed/failed/errors/skipped (+ hung or crashed)."""
        text = (
            f"{self.count('pass', 'xfail')}/{self.count('fail', 'xpass')}/"
            f"{self.count('error')}/{self.count('skip')}"
        )
        stuck = self.count("hang", "crash")
        return f"{text} +{stuck} hung" if stuck else text


@dataclasses.dataclass
class Difference:
    test: str
    module: str
    plain: Outcome
    traced: Outcome
    kind: str  # the traced outcome, or "slow"
    #: The difference is the test file's, not one test's (a hang after its tests).
    whole_file: bool = False
    #: What running the test alone, both ways, gave; empty when not rechecked.
    alone: str = ""


# --- running -----------------------------------------------------------------


def regrtest_command(
    python: str, module: str, traced: bool, exporters: Sequence[str]
) -> list[str]:
    """``python -m test`` or ``python -m mptrace run [-e SPEC...] -m test``."""
    if not traced:
        return [python, "-m", "test", module]
    options = [arg for spec in exporters for arg in ("-e", spec)]
    return [python, "-m", "mptrace", "run", *options, "-m", "test", module]


def run_regrtest(
    python: str,
    module: str,
    traced: bool,
    *,
    exporters: Sequence[str],
    timeout: int,
    logs: str,
    match: str | None = None,
) -> Run:
    """Run one test file verbosely, its outcomes from JUnit, else from its log."""
    suffix = "mptrace" if traced else "plain"
    alone = f".{'.'.join(match.split('.')[-2:])}" if match else ""
    stem = os.path.join(logs, f"{module}{alone}.{suffix}")
    xml_path, log_path = f"{stem}.xml", f"{stem}.log"
    with contextlib.suppress(FileNotFoundError):
        os.remove(xml_path)
    command = [
        *regrtest_command(python, module, traced, exporters),
        "-v",
        "--junit-xml",
        xml_path,
        "--timeout",
        str(timeout),
    ]
    if match:
        command += ["--match", match]
    run = Run(module, traced, command, log=log_path)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=logs,
            env=env,
            start_new_session=True,
        )
        try:
            # regrtest's own timeout is per test file; the wall one is a backstop.
            run.returncode = proc.wait(timeout=timeout + 120)
        except subprocess.TimeoutExpired:
            run.timeout = "wall timeout"
            _kill_group(proc.pid)
            run.returncode = proc.wait()
    run.seconds = time.perf_counter() - start
    run.leftovers = _leftovers(proc.pid)
    if run.leftovers:
        _kill_group(proc.pid)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    _read_log(run, text)
    if os.path.exists(xml_path):
        run.junit = True
        run.outcomes = read_junit(xml_path)
    return run


def _kill_group(pgid: int) -> None:
    """End the run's process group: the run, its children, its listener."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def _leftovers(pgid: int, grace: float = 5.0) -> list[str]:
    """The processes of the group still alive *grace* seconds after its leader."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        time.sleep(0.2)
    try:
        import psutil
    except ImportError:
        return ["(some process; psutil is not installed to name it)"]
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                cmdline = shlex.join(proc.info["cmdline"] or [])
                found.append(f"{proc.pid}: {cmdline[:120]}")
        except (OSError, psutil.Error):
            continue
    return found


def read_junit(path: str) -> dict[str, Outcome]:
    """Every test of regrtest's JUnit file, by id."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test, subtest = _key(case.get("name", "?"))
        seconds = float(case.get("time") or 0.0)
        status, detail = "pass", ""
        for tag, name in (
            ("failure", "fail"),
            ("error", "error"),
            ("skipped", "skip"),
            ("output", "xfail"),
            ("outcome", "xpass"),
        ):
            element = case.find(tag)
            if element is not None:
                status = name
                if name in ("fail", "error"):
                    detail = _error_lines(
                        element.get("message") or "", element.text or ""
                    )
                elif name == "skip":
                    detail = element.text or ""
                break
        if subtest:
            detail = f"[{subtest}] {detail}"
        previous = outcomes.get(test)
        if previous is None or previous.status in GOOD:
            outcomes[test] = Outcome(status, seconds, detail)
    return outcomes


def _key(test_id: str) -> tuple[str, str]:
    """A test's id without its subtest's parameters, and those parameters."""
    m = _SUFFIXED.match(test_id)
    if not m:
        return test_id, ""
    head, inner = m.groups()
    if "." not in head:  # setUpClass (test.m.C): a class fixture
        return f"{inner}.{head}", ""
    return head, inner


def _error_lines(message: str, traceback: str, lines: int = 6) -> str:
    """Where the error was raised (the innermost frame outside unittest), its message."""
    frames = [
        ln.strip() for ln in traceback.splitlines() if ln.lstrip().startswith("File ")
    ]
    ours = [f for f in frames if f"{os.sep}unittest{os.sep}" not in f]
    head = (ours or frames)[-1:]
    body = [ln for ln in message.strip().splitlines() if ln.strip()]
    return "\n".join(head + body[:lines])


def _read_log(run: Run, text: str) -> None:
    """Warnings, env changed, and the outcomes a run that ended early can give."""
    current: str | None = None  # the test started whose outcome is not yet printed
    last: str | None = None
    outcomes: dict[str, Outcome] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        start = _START.match(line)
        if start:
            current = last = start.group(2)
        m = _WARNING.search(line)
        if m and m.group(1).startswith(" ") and run.warnings:
            where, previous = run.warnings[-1]  # a warning's continuation line
            run.warnings[-1] = (where, f"{previous} / {m.group(1).strip()}")
        elif m:
            where = current or (f"after {last}" if last else run.module)
            text = m.group(1)
            if text == "Unraisable exception" and i + 1 < len(lines):
                text = f"{text} / {lines[i + 1].strip()}"  # "Exception ignored in: …"
            run.warnings.append((where, text))
        if _ENV_CHANGED.match(line):
            run.env_changed = True
        m = _OUTCOME.search(line)
        if m and current is not None:
            word = m.group(1)
            status = "skip" if word.startswith("skipped") else _VERBOSE_STATUS[word]
            outcomes[current] = Outcome(status)
            current = None
        timed_out = _TIMEOUT.search(line)
        if timed_out and not run.timeout:
            run.timeout = "regrtest --timeout"
            run.stack = "\n".join([timed_out.group(), *_main_thread(lines[i + 1 :])])
            run.stuck_at = current or f"after {last}"
            if current is not None:
                outcomes[current] = Outcome("hang", run.seconds, run.stack)
                current = None
    if run.timeout == "wall timeout":
        run.stuck_at = current or f"after {last}"
        if current is not None:
            outcomes[current] = Outcome(
                "hang", run.seconds, "killed at the wall timeout"
            )
            current = None
    if not run.timeout and run.returncode not in (0, 1, 2, 3, 4, 5):
        run.stuck_at = current or f"after {last}"
        if current is not None:
            outcomes[current] = Outcome(
                "crash", 0.0, f"the run ended with status {run.returncode}"
            )
    run.outcomes = outcomes


def _main_thread(dump: Sequence[str], frames: int = 8) -> list[str]:
    """The main thread's header and innermost frames from faulthandler's dump.

    faulthandler writes each thread as a header, then its frames, newest thread
    first, so the main thread is the last block.
    """
    blocks: list[list[str]] = []
    for line in dump:
        if line.startswith(("Thread 0x", "Current thread")):
            blocks.append([line.strip()])
        elif line.startswith("  File ") and blocks:
            blocks[-1].append(line.strip())
        elif blocks and line.strip():
            break
    return blocks[-1][: frames + 1] if blocks else []


# --- comparing ---------------------------------------------------------------


def differences(plain: Run, traced: Run, slow: float) -> list[Difference]:
    """Tests that worked plain and not under mptrace, or took *slow* s longer."""
    found = []
    for test, before in plain.outcomes.items():
        after = traced.outcomes.get(test)
        if before.status not in GOOD or after is None:
            continue
        if after.status not in GOOD:
            found.append(Difference(test, plain.module, before, after, after.status))
        elif after.status == before.status and after.seconds - before.seconds > slow:
            found.append(Difference(test, plain.module, before, after, "slow"))
    if traced.stuck_at.startswith("after ") and not plain.stuck_at:
        # Every test ran, then the file never ended (a module's teardown) or died.
        kind = "crash" if not traced.timeout else "hang"
        end = traced.timeout or f"status {traced.returncode}"
        found.append(
            Difference(
                f"{traced.module}, {traced.stuck_at}",
                plain.module,
                Outcome("pass", plain.seconds),
                Outcome(kind, traced.seconds, traced.stack or end),
                kind,
                whole_file=True,
            )
        )
    return found


def not_run(plain: Run, traced: Run) -> list[str]:
    """Tests run plain that a traced run which ended early never reached."""
    return [t for t in plain.outcomes if t not in traced.outcomes]


def recheck(
    diff: Difference, python: str, *, exporters: Sequence[str], timeout: int, logs: str
) -> str:
    """Run the test alone, both ways: does the difference hold without the rest?"""
    match = diff.test
    got = []
    for traced in (False, True):
        run = run_regrtest(
            python,
            diff.module,
            traced,
            exporters=exporters,
            timeout=timeout,
            logs=logs,
            match=match,
        )
        outcome = run.outcomes.get(diff.test)
        status = outcome.status if outcome else "not run"
        if outcome and diff.kind == "slow":
            status = f"{status} in {outcome.seconds:.1f} s"
        if run.stuck_at.startswith("after "):
            status += f", then the file {run.timeout or 'crashed'}"
        got.append(status)
        if traced and outcome and not diff.traced.detail:
            # The whole run ended before unittest printed its errors; this one did.
            diff.traced.detail = outcome.detail
    plain_ok = got[0].split()[0] in GOOD
    traced_bad = got[1].split()[0] not in GOOD
    if diff.kind == "slow":
        held = "see times"
    else:
        held = "the same alone" if plain_ok and traced_bad else "NOT the same alone"
    return f"alone: plain {got[0]}, mptrace {got[1]} ({held})"


# --- reporting ---------------------------------------------------------------


def _table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table on a terminal, a Markdown one otherwise."""
    rows = [list(r) for r in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    print(f"\n{title}\n")
    print("| " + " | ".join(headers) + " |")
    print(
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    )
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")


def _shape(warning: tuple[str, str]) -> tuple[str, str]:
    """A warning without its numbers (addresses, pids, counts), to compare runs."""
    where, text = warning
    return where, re.sub(r"0x[0-9a-f]+|\d+", "#", text)


def _grouped(warnings: Sequence[tuple[str, str]]) -> dict[str, tuple[str, int]]:
    """Warnings that differ only in their numbers, once: where first, how often."""
    grouped: dict[str, tuple[str, int]] = {}
    first: dict[str, str] = {}
    for where, text in warnings:
        shape = _shape((where, text))[1]
        text = first.setdefault(shape, text)
        place, times = grouped.get(text, (where, 0))
        grouped[text] = (place, times + 1)
    return grouped


def _status(run: Run) -> str:
    if run.timeout:
        return run.timeout
    extra = " +leftovers" if run.leftovers else ""
    return f"rc {run.returncode}{' env changed' if run.env_changed else ''}{extra}"


def report(
    pairs: Sequence[tuple[Run, Run]],
    diffs: Sequence[Difference],
    lost: dict[str, list[str]],
) -> None:
    rows = []
    totals: dict[str, list[Run]] = {}
    for plain, traced in pairs:
        totals.setdefault(plain.module.split(".")[0], []).extend([plain, traced])
        ratio = traced.seconds / plain.seconds if plain.seconds else 0.0
        rows.append(
            [
                plain.module,
                f"{plain.seconds:.1f}",
                f"{traced.seconds:.1f}",
                f"{ratio:.2f}×",
                plain.counts(),
                traced.counts(),
                f"{len(plain.warnings)}/{len(traced.warnings)}",
                _status(plain),
                _status(traced),
            ]
        )
    for suite, runs in totals.items():
        if len(runs) > 2:
            p = sum(r.seconds for r in runs if not r.traced)
            t = sum(r.seconds for r in runs if r.traced)
            rows.append(
                [
                    f"{suite} (all)",
                    f"{p:.1f}",
                    f"{t:.1f}",
                    f"{t / p:.2f}×",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    _table(
        "Test files: seconds, passed/failed/errors/skipped, warnings (plain/mptrace)",
        [
            "test file",
            "plain s",
            "mptrace s",
            "ratio",
            "plain p/f/e/s",
            "mptrace p/f/e/s",
            "warnings",
            "plain",
            "mptrace",
        ],
        rows,
    )

    print("\nWarnings (regrtest's `Warning --` lines; env changed):\n")
    any_warning = False
    for plain, traced in pairs:
        for run in (plain, traced):
            if not (run.warnings or run.env_changed or run.leftovers):
                continue
            any_warning = True
            way = "mptrace" if run.traced else "plain"
            changed = ", env changed" if run.env_changed else ""
            print(f"- {run.module} ({way}{changed}):")
            seen = {_shape(w)[1] for w in plain.warnings}
            for text, (where, times) in _grouped(run.warnings).items():
                new = "NEW " if run.traced and _shape(("", text))[1] not in seen else ""
                more = f" (×{times}; the first {where})" if times > 1 else f" ({where})"
                print(f"    - {new}{text[:400]}{more}")
            for leftover in run.leftovers:
                print(f"    - left alive after the run: {leftover}")
    if not any_warning:
        print("- none")

    print(f"\nTests whose outcome differs ({len(diffs)}):\n")
    if not diffs:
        print("- none")
    for d in diffs:
        timing = f"{d.plain.seconds:.1f} s plain, {d.traced.seconds:.1f} s mptrace"
        print(f"- {d.kind.upper()} {d.test} ({timing})")
        if d.alone:
            print(f"    {d.alone}")
        for line in d.traced.detail.splitlines()[:8]:
            print(f"    | {line[:200]}")
    for module, tests in lost.items():
        if tests:
            shown = ", ".join(
                t.rsplit(".", 2)[-2] + "." + t.rsplit(".", 1)[-1] for t in tests[:5]
            )
            more = f" and {len(tests) - 5} more" if len(tests) > 5 else ""
            print(
                f"- NOT RUN under mptrace, the run having ended early: {len(tests)} tests of {module} ({shown}{more})"
            )


# --- main ----------------------------------------------------------------------


def list_modules(python: str, suites: Sequence[str], cwd: str) -> list[str]:
    """regrtest's test files for *suites*: packages split into their files."""
    out = subprocess.run(
        [python, "-m", "test", "--list-tests", *suites],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    modules = [ln.strip() for ln in out.stdout.splitlines() if ln.startswith("test_")]
    if out.returncode != 0 or not modules:
        raise SystemExit(f"regrtest lists no tests for {suites}:\n{out.stderr}")
    return modules


def check_python(python: str) -> str:
    """The interpreter's version, once it is known to have mptrace and regrtest."""
    out = subprocess.run(
        [
            python,
            "-c",
            "import platform, mptrace, test.libregrtest; print(platform.python_version())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(
            f"{python} cannot import mptrace and regrtest (the test package); "
            f"install mptrace in its environment.\n{out.stderr}"
        )
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter whose tests run (default: this one)",
    )
    parser.add_argument(
        "--suites",
        nargs="+",
        metavar="NAME",
        help=f"regrtest packages or files (default: {' '.join(DEFAULT_SUITES)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{', '.join(QUICK_SUITES)} on {QUICK_CORES} cores",
    )
    parser.add_argument(
        "--cores", type=positive_int, help="run on this many cores (default: all)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_int,
        default=600,
        help="seconds a test file may run before regrtest ends it (default: 600)",
    )
    parser.add_argument(
        "--recheck-timeout",
        type=positive_int,
        default=120,
        help="the same for one test run again alone (default: 120)",
    )
    parser.add_argument(
        "--slow",
        type=float,
        default=30.0,
        help="a test that takes this many seconds longer under mptrace differs (default: 30)",
    )
    parser.add_argument(
        "-e",
        "--exporter",
        action="append",
        default=[],
        metavar="SPEC",
        help="passed on to mptrace run (default: its own, the console)",
    )
    parser.add_argument(
        "--no-recheck",
        dest="recheck",
        action="store_false",
        help="do not run each differing test again alone",
    )
    parser.add_argument(
        "--logs", help="where the runs' logs go (default: a new temporary folder)"
    )
    args = parser.parse_args()

    suites = args.suites or (QUICK_SUITES if args.quick else DEFAULT_SUITES)
    cores = args.cores or (QUICK_CORES if args.quick else None)
    if cores and hasattr(os, "sched_setaffinity"):
        usable = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, usable[:cores])  # inherited by every run
    logs = os.path.abspath(args.logs or tempfile.mkdtemp(prefix="stdlib-compat-"))
    os.makedirs(logs, exist_ok=True)
    version = check_python(args.python)
    modules = list_modules(args.python, suites, logs)

    print_header(
        "mptrace run against CPython's multiprocessing and concurrent.futures tests",
        sys.argv[0],
        "each suite's own (fork, spawn, forkserver)",
    )
    print(f"- tested interpreter: Python {version} (`{args.python}`)")
    print(f"- test files: {len(modules)}; regrtest --timeout {args.timeout} s each")
    print(f"- logs: {logs}")
    sys.stdout.flush()

    pairs: list[tuple[Run, Run]] = []
    diffs: list[Difference] = []
    lost: dict[str, list[str]] = {}
    for i, module in enumerate(modules, 1):
        runs = []
        for traced in (False, True):
            way = "mptrace" if traced else "plain"
            print(
                f"[{i}/{len(modules)}] {module} {way} …",
                end=" ",
                file=sys.stderr,
                flush=True,
            )
            run = run_regrtest(
                args.python,
                module,
                traced,
                exporters=args.exporter,
                timeout=args.timeout,
                logs=logs,
            )
            print(
                f"{run.seconds:.1f} s, {run.counts()}, {_status(run)}",
                file=sys.stderr,
                flush=True,
            )
            runs.append(run)
        plain, traced_run = runs
        pairs.append((plain, traced_run))
        diffs.extend(differences(plain, traced_run, args.slow))
        if not traced_run.junit:
            lost[module] = [
                t
                for t in not_run(plain, traced_run)
                if plain.outcomes[t].status in GOOD
            ]
    if args.recheck:
        for d in (d for d in diffs if not d.whole_file):
            print(f"recheck {d.test} …", end=" ", file=sys.stderr, flush=True)
            d.alone = recheck(
                d,
                args.python,
                exporters=args.exporter,
                timeout=args.recheck_timeout,
                logs=logs,
            )
            print(d.alone, file=sys.stderr, flush=True)
    report(pairs, diffs, lost)
    sys.exit(1 if diffs or any(lost.values()) else 0)


if __name__ == "__main__":
    main()
