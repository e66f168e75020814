"""``mptrace logs``: the records of a real run's JSON lines, filtered and followed.

A small program (written to a temporary folder, run as its own process under
each start method) logs from a parent, a child that returns, a child that
raises, a child that leaves by ``os._exit(3)`` and a pool whose map fails on one
item. The command reads its file; every filter is checked against the same
filter computed here from the file itself.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import read_jsonl

from mptrace._cli.main import main
from mptrace._render.lines import make_console_renderer

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys, threading
    import mptrace

    log = logging.getLogger("demo.worker")

    def ok():
        log.info("hello from ok")
        mptrace.get_logger("demo.struct").warning("careful", n=1)

    def boom():
        log.info("about to fail")
        raise ValueError("boom on purpose")

    def quit3():
        log.error("leaving with 3")
        os._exit(3)

    def square(n):
        if n == 5:
            raise KeyError(n)
        return n * n

    @mptrace.traced
    def overlapping(barrier):
        barrier.wait(30)  # both threads are inside their spans at once

    if __name__ == "__main__":
        path, method, mode = sys.argv[1], sys.argv[2], sys.argv[3]
        with mptrace.init(exporters=[f"jsonl:{path}"], level="DEBUG"):
            ctx = mptrace.get_context(method)
            logging.getLogger("demo").debug("starting %s", method)
            targets = (ok,) if mode == "ok" else (ok, boom, quit3)
            procs = [ctx.Process(target=f, name=f.__name__) for f in targets]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
            if mode != "ok":
                with mptrace.Pool(2, context=ctx) as pool:
                    pool.map(square, range(4))
                    try:
                        pool.map(square, range(8), chunksize=1)
                    except KeyError:
                        logging.getLogger("demo").exception("map failed")
                barrier = threading.Barrier(2)
                threads = [threading.Thread(target=overlapping, args=(barrier,))
                           for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
            logging.getLogger("demo").info("done")
        print(json.dumps({p.name: p.pid for p in procs} | {"main": os.getpid()}))
    """
)

_runs: dict[tuple[str, str], tuple[Path, dict[str, int]]] = {}


def make_run(tmp: Path, method: str, mode: str = "full") -> tuple[Path, dict[str, int]]:
    """Run the program once per (method, mode); its file and its pids by name."""
    key = (method, mode)
    if key not in _runs:
        script = tmp / "program.py"
        script.write_text(SCRIPT)
        path = tmp / f"run-{method}-{mode}.jsonl"
        done = subprocess.run(
            [sys.executable, str(script), str(path), method, mode],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        _runs[key] = (path, json.loads(done.stdout.splitlines()[-1]))
    return _runs[key]


@pytest.fixture
def run(
    start_method: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, int]]:
    """The full program's file under *start_method*, and its pids."""
    return make_run(tmp_path_factory.getbasetemp(), start_method)


def mptrace_command(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mptrace ARGS`` as a program of its own."""
    return subprocess.run(
        [sys.executable, "-m", "mptrace", *args],
        check=False, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """Run the command in this process with click's runner."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def cli_json(*args: str) -> list[dict[str, Any]]:
    result = cli("logs", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


class TestLogs:
    def test_filters_select_exactly_the_matching_records(
        self, run: tuple[Path, dict[str, int]]
    ) -> None:
        """Each filter gives exactly the events a filter written here picks."""
        path, pids = run
        events = read_jsonl(path)
        logs = [e for e in events if e["kind"] == "log"]
        boom_trace = next(e["trace_id"] for e in logs if e["pid"] == pids["boom"]
                          and "trace_id" in e)  # fmt: skip
        middle = sorted(e["ts"] for e in logs)[len(logs) // 2]
        since = (
            datetime.datetime.fromtimestamp(middle // 10**9)
            + datetime.timedelta(microseconds=middle % 10**9 // 1000)
        ).isoformat()
        ranks = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
        f = str(path)
        cases: list[tuple[list[str], list[dict[str, Any]]]] = [
            ([f], logs),
            (["--process", "boom", f], [e for e in logs if e["process"] == "boom"]),
            (["--pid", str(pids["quit3"]), "--process", "ok", f],
             [e for e in logs if e["pid"] == pids["quit3"] or e["process"] == "ok"]),
            (["--level", "warning", f],
             [e for e in logs if ranks[e["level"]] >= 30]),
            (["--logger", "demo", f],
             [e for e in logs
              if e["logger"] == "demo" or e["logger"].startswith("demo.")]),
            (["--grep", "boom|leav", f],
             [e for e in logs if re.search("boom|leav", e["event"])]),
            (["--trace", boom_trace, f],
             [e for e in logs if e.get("trace_id") == boom_trace]),
            (["--since", since, f],
             [e for e in logs if e["ts"] >= middle // 1000 * 1000]),
            (["--kind", "span", "--level", "error", f],
             [e for e in events if e["kind"] == "span" and e["status"] == "error"]),
            (["--kind", "all", f], events),
        ]  # fmt: skip
        for args, expected in cases:
            assert expected, args
            assert cli_json(*args) == expected, args

    def test_renders_records_as_the_console_does(
        self, run: tuple[Path, dict[str, int]]
    ) -> None:
        """``python -m mptrace logs`` prints each record as the console exporter."""
        path, _ = run
        render = make_console_renderer(colours=False)
        expected = "".join(
            render(e) + "\n" for e in read_jsonl(path) if e["kind"] == "log"
        )
        env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
        done = mptrace_command("logs", str(path), env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout == expected
        assert "\x1b[" not in done.stdout
        assert done.stderr == ""

    def test_colour_follows_force_color_and_no_color(
        self, run: tuple[Path, dict[str, int]]
    ) -> None:
        """FORCE_COLOR colours output that is not a terminal; NO_COLOR wins over it."""
        path, _ = run
        forced = cli("logs", str(path), env={"FORCE_COLOR": "1", "NO_COLOR": ""})
        assert "\x1b[" in forced.stdout
        plain = cli("logs", str(path), env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        assert "\x1b[" not in plain.stdout

    def test_gzip_and_rotated_files_are_read_oldest_first(self, tmp_path: Path) -> None:
        """Named in any order, a gzip'd older part and the current file read as one."""
        path, _ = make_run(tmp_path, "fork")
        lines = path.read_bytes().splitlines(keepends=True)
        half = len(lines) // 2
        with gzip.open(tmp_path / "run.jsonl.1.gz", "wb") as f:
            f.writelines(lines[:half])
        (tmp_path / "run.jsonl").write_bytes(b"".join(lines[half:]))
        got = cli_json("--kind", "all", str(tmp_path / "run.jsonl"),
                       str(tmp_path / "run.jsonl.1.gz"))  # fmt: skip
        assert got == [json.loads(line) for line in lines]


def _with_runs(lines: list[bytes], run: str | None) -> list[bytes]:
    out = []
    for line in lines:
        event = json.loads(line)
        if run is not None:
            event["run"] = run
        out.append(json.dumps(event).encode() + b"\n")
    return out


class TestRuns:
    def test_run_last_and_by_id(self, tmp_path: Path) -> None:
        """Lines of an old run without ids, then runs A and B: each is picked alone."""
        path, _ = make_run(tmp_path, "fork")
        lines = path.read_bytes().splitlines(keepends=True)
        mixed = tmp_path / "mixed.jsonl"
        parts = {None: _with_runs(lines, None), "A": _with_runs(lines, "A"),
                 "B": _with_runs(lines, "B")}  # fmt: skip
        mixed.write_bytes(b"".join(parts[None] + parts["A"] + parts["B"]))
        every = [json.loads(line) for part in parts.values() for line in part]
        f = str(mixed)
        assert cli_json("--kind", "all", f) == every
        assert cli_json("--kind", "all", "--run", "last", f) == [
            e for e in every if e.get("run") == "B"
        ]
        assert cli_json("--kind", "all", "--run", "A", f) == [
            e for e in every if e.get("run") == "A"
        ]

    def test_a_file_without_run_ids_is_one_run(self, tmp_path: Path) -> None:
        """``--run last`` on a file whose lines name no run gives the whole file."""
        path, _ = make_run(tmp_path, "fork")
        assert cli_json("--kind", "all", "--run", "last", str(path)) == read_jsonl(path)


class TestBadInput:
    def test_bad_lines_are_named_and_reading_goes_on(self, tmp_path: Path) -> None:
        """Non-JSON, foreign JSON and a truncated last line: one message each."""
        good = [json.dumps({"kind": "log", "ts": 1, "level": "info", "logger": "x",
                            "event": f"good {i}", "process": "p", "pid": 1,
                            "ppid": 0, "seq": i}) for i in range(3)]  # fmt: skip
        path = tmp_path / "bad.jsonl"
        path.write_text(
            f"{good[0]}\nthis is not json\n{good[1]}\n"
            '{"level": "info", "msg": "another program"}\n'
            f"{good[2]}\n" + good[2][:20]
        )
        done = mptrace_command("logs", "--json", str(path))
        assert done.returncode == 0
        assert [json.loads(x)["event"] for x in done.stdout.splitlines()] == [
            "good 0",
            "good 1",
            "good 2",
        ]
        errors = done.stderr.splitlines()
        assert len(errors) == 3, errors
        assert errors[0].startswith(f"{path}:2: not JSON (")
        assert errors[1].startswith(f"{path}:4: not an mptrace event")
        assert errors[2].startswith(f"{path}:6: truncated line")

    def test_messages_are_capped(self, tmp_path: Path) -> None:
        """After ten messages the rest are counted."""
        path = tmp_path / "junk.jsonl"
        path.write_text("junk\n" * 25)
        result = CliRunner().invoke(main, ["logs", str(path)])
        lines = result.stderr.splitlines()
        assert len(lines) == 11
        assert lines[-1] == "mptrace: 15 more unreadable lines not shown."

    def test_usage_errors_exit_2(self, tmp_path: Path) -> None:
        """Unknown levels, bad times and missing files are usage errors."""
        path = tmp_path / "x.jsonl"
        path.write_text("")
        for args in (["logs", "--level", "loud", str(path)],
                     ["logs", "--since", "yesterday-ish", str(path)],
                     ["logs", "--grep", "(", str(path)],
                     ["report"]):  # fmt: skip
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 2, (args, result.output)
        assert (
            "is not a time"
            in CliRunner().invoke(main, ["logs", "--since", "soon", str(path)]).stderr
        )


def _log_line(n: int) -> bytes:
    return json.dumps({"kind": "log", "ts": n, "level": "info", "logger": "t",
                       "event": f"line {n}", "process": "p", "pid": 1, "ppid": 0,
                       "seq": n}).encode() + b"\n"  # fmt: skip


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """``mptrace logs --follow --json`` on a file, and a way to await its next line."""
    path = tmp_path / "live.jsonl"
    path.write_bytes(_log_line(1) + _log_line(2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mptrace", "logs", "--follow", "--json", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines: queue.Queue[bytes] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(
        target=lambda: [lines.put(x) for x in proc.stdout], daemon=True
    ).start()  # type: ignore[union-attr]

    def next_event() -> str:
        return str(json.loads(lines.get(timeout=20))["event"])

    try:
        yield path, next_event
    finally:
        proc.terminate()
        proc.wait(20)


class TestFollow:
    def test_sees_appended_lines_and_follows_rotation(
        self, follower: tuple[Path, Any]
    ) -> None:
        """Appends, a line in two pieces, the rotated file's last line, the new file."""
        path, next_event = follower
        assert [next_event(), next_event()] == ["line 1", "line 2"]
        with open(path, "ab") as f:
            f.write(_log_line(3))
        assert next_event() == "line 3"
        with open(path, "ab") as f:
            f.write(_log_line(4)[:10])
            f.flush()
            f.write(_log_line(4)[10:])
        assert next_event() == "line 4"
        os.rename(path, path.with_suffix(".jsonl.1"))
        with open(path.with_suffix(".jsonl.1"), "ab") as f:
            f.write(_log_line(5))  # written just before the writer reopened the path
        path.write_bytes(_log_line(6))
        assert [next_event(), next_event()] == ["line 5", "line 6"]
        with open(path, "ab") as f:
            f.write(_log_line(7))
        assert next_event() == "line 7"


class TestPrefilter:
    @pytest.mark.parametrize(
        "line",
        [
            b'{"kind":"log","ts":1,"level":"info","event":"x"}',
            b'{"kind": "log", "ts": 1, "level": "info", "event": "x"}',
        ],
        ids=["compact", "spaced"],
    )
    def test_lines_below_the_level_are_dropped_before_decoding(self, line):
        """The raw-line test reads compact lines (as written now) and spaced
        ones (files of earlier versions) alike."""
        from mptrace._cli.reader import make_prefilter

        keep = make_prefilter(frozenset({"log"}), frozenset({"debug", "info"}))
        assert not keep(line)
        assert keep(line.replace(b'"info"', b'"error"'))
