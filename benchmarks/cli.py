"""How fast the ``mptrace`` command reads a big file, against jq and grep.

Makes a JSON-lines file of about a million lines from a real run (a parent and
a few children logging through mptrace, one record in 100 an error, and a pool
map), then times on the same file, best of ``--repeat`` runs:

- ``mptrace logs --level error --json FILE``
- ``jq -c 'select(.level=="error")' FILE``
- ``grep '"level":"error"' FILE``
- ``mptrace report FILE``, with its peak RSS

and prints a table and PASS/MISS for the targets: the level filter no slower
than jq; the report within a few seconds and in bounded memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import positive_int, print_header, print_targets

PROGRAM = textwrap.dedent(
    """
    import logging, sys
    import mptrace

    def work(n, count):
        log = logging.getLogger(f"bench.worker{n}")
        slog = mptrace.get_logger("bench.struct")
        for i in range(count):
            if i % 100 == 0:
                log.error("item %d of worker %d failed", i, n)
            elif i % 2:
                slog.info("item done", worker=n, item=i, size=i * 7)
            else:
                log.info("processing item %d", i)

    def square(x):
        return x * x

    if __name__ == "__main__":
        path, lines, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        workers = 4
        with mptrace.init(exporters=[f"jsonl:{path}"], level="INFO"):
            ctx = mptrace.get_context(method)
            procs = [ctx.Process(target=work, args=(n, lines // workers))
                     for n in range(workers)]
            for p in procs:
                p.start()
            with mptrace.Pool(2, context=ctx) as pool:
                pool.map(square, range(1000), chunksize=10)
            for p in procs:
                p.join()
    """
)

MiB = 1024 * 1024
# Runs a command and prints its own peak RSS (KiB), apart from any other child's.
MEASURE = (
    "import resource, subprocess, sys;"
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def make_file(path: Path, lines: int, method: str) -> int:
    """Run the program into *path*; the number of lines written."""
    script = path.with_suffix(".py")
    script.write_text(PROGRAM)
    subprocess.run([sys.executable, str(script), str(path), str(lines), method],
                   check=True, timeout=1800)  # fmt: skip
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def best_time(command: list[str], repeat: int) -> tuple[float, int]:
    """(best wall seconds, output lines) of *command* over *repeat* runs."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
        best = min(best, time.perf_counter() - start)
        if done.returncode not in (0, 1):  # report exits 1 when a process failed
            raise SystemExit(f"{command[0]} failed with {done.returncode}")
        count = done.stdout.count(b"\n")
    return best, count


def peak_rss(command: list[str]) -> int:
    """Peak RSS in bytes of *command*, measured alone."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *command],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return int(done.stdout.strip() or 0) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=positive_int, default=1_000_000)
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--start-method", default="fork")
    parser.add_argument("--file", help="reuse (or make) the file at this path")
    args = parser.parse_args()
    print_header("mptrace command: reading a big file", "benchmarks/cli.py",
                 args.start_method)  # fmt: skip
    jq, grep = shutil.which("jq"), shutil.which("grep")
    if jq is None or grep is None:
        raise SystemExit("This benchmark needs jq and grep on the PATH.")
    folder = Path(tempfile.mkdtemp(prefix="mptrace-bench-"))
    path = Path(args.file) if args.file else folder / "run.jsonl"
    if not path.exists():
        make_file(path, args.lines, args.start_method)
    with open(path, "rb") as f:
        count = sum(1 for _ in f)
    print(f"- file: {count:,} lines, {path.stat().st_size / MiB:,.0f} MiB\n")

    mptrace = [sys.executable, "-m", "mptrace"]
    f = str(path)
    commands = {
        "mptrace logs --level error --json": [*mptrace, "logs", "--level", "error",
                                              "--json", f],
        "jq -c 'select(.level==\"error\")'": [jq, "-c", 'select(.level=="error")', f],
        "grep '\"level\":\"error\"'": [grep, '"level":"error"', f],
        "mptrace report": [*mptrace, "report", f],
    }  # fmt: skip
    times = {name: best_time(cmd, args.repeat) for name, cmd in commands.items()}
    jq_s = times["jq -c 'select(.level==\"error\")'"][0]
    rss = {name: peak_rss(cmd) for name, cmd in commands.items() if "mptrace" in name}
    print(f"| command | best of {args.repeat} (s) | ÷ jq | output lines "
          "| peak RSS (MiB) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (seconds, lines) in times.items():
        memory = f"{rss[name] / MiB:.0f}" if name in rss else ""
        print(
            f"| `{name}` | {seconds:.2f} | {seconds / jq_s:.2f} | {lines:,} "
            f"| {memory} |"
        )
    logs_s, logs_n = times["mptrace logs --level error --json"]
    report_s = times["mptrace report"][0]
    report_rss = rss["mptrace report"]
    print_targets([
        (logs_s <= jq_s, (f"mptrace logs --level error no slower than jq "
                          f"({logs_s:.2f} s vs {jq_s:.2f} s)")),
        (logs_n == times["jq -c 'select(.level==\"error\")'"][1],
         f"the same records as jq ({logs_n:,})"),
        (report_s <= 10, f"mptrace report within 10 s ({report_s:.2f} s)"),
        (report_rss <= 150 * MiB, (f"mptrace report peak RSS at most 150 MiB "
                                   f"({report_rss / MiB:.0f} MiB)")),
    ])  # fmt: skip
    if not args.file:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
