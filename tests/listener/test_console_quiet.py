"""A console a person can follow: quiet by default, in timestamp order.

The README's Quick start program (``examples/pipeline.py``) runs as a person
runs it; its stderr is read through a pipe. Its JSON-lines file, written by
the same run, says what the program itself logged, so the console can be
held to exactly that: the program's own lines, one line per child that
ended badly, and the table, with every line in timestamp order.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from conftest import read_jsonl

import mptrace
from mptrace._listener.console import parse_options
from mptrace._listener.console_sink import ConsoleSink, shorten
from mptrace._render.lines import LEVEL_STYLES
from mptrace._session import options as _options
from mptrace.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "pipeline.py"
TIMEOUT = 120
HEADER = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[(\w+)\s*\] (\S+)\[(\d+)\] (.*)$"
)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR") and not k.startswith("MPTRACE_")
    }
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        timeout=TIMEOUT,
        env=_env(**env),
        cwd=cwd,
        check=False,
    )
    text = proc.stderr.decode("utf-8")
    assert proc.returncode == 0, text
    return text


def event_lines(text: str) -> list[re.Match[str]]:
    return [m for m in map(HEADER.match, text.split("\n")) if m]


def assert_in_time_order(lines: list[re.Match[str]]) -> None:
    stamps = [datetime.fromisoformat(m.group(1)) for m in lines]
    late = [
        (a.group(0), b.group(0))
        for a, b, sa, sb in zip(lines, lines[1:], stamps, stamps[1:], strict=False)
        if sb < sa
    ]
    assert not late, late


def pipeline(tmp_path: Path, method: str, console: str = "console", **env: str):
    """(stderr, the run's events) of the Quick start program."""
    text = run(
        [
            str(PIPELINE),
            "--exporter",
            console,
            "--exporter",
            "jsonl:run.jsonl",
            "--start-method",
            method,
        ],
        tmp_path,
        **env,
    )
    return text, read_jsonl(tmp_path / "run.jsonl")


class TestQuickStart:
    def test_own_lines_one_line_per_bad_end_then_the_table(
        self, tmp_path, start_method
    ):
        """Exactly the program's records, then one line for transform-3 (exit 70)
        saying where to look, all in timestamp order; then the table of 10."""
        text, events = pipeline(tmp_path, start_method)
        records = [e for e in events if e["kind"] == "log"]
        exited = [
            e
            for e in events
            if e["kind"] == "lifecycle" and e["transition"] == "exited"
        ]
        (bad,) = [e for e in exited if e["exitcode"] != 0]
        lines = event_lines(text)
        assert len(lines) == len(records) + 1, text
        ends = [m for m in lines if "exited with code" in m.group(5)]
        assert [(m.group(2), m.group(3), int(m.group(4))) for m in ends] == [
            ("error", "transform-3", bad["target_pid"])
        ]
        assert ends[0].group(5) == (
            "exited with code 70; its last records are above; "
            "see also: mptrace report run.jsonl"
        )
        # Every record of the program is a line, once; nothing of mptrace's own.
        shown = sorted((int(m.group(4)), m.group(2)) for m in lines if m not in ends)
        assert shown == sorted((r["pid"], r["level"]) for r in records)
        assert not [m for m in lines if m.group(5).startswith(("lifecycle ", "span "))]
        assert_in_time_order(lines)
        table = text.split("\n")
        table = table[table.index("mptrace: processes") :]
        assert HEADER.match(text.split("\n")[-len(table) - 1])
        rows = [row.split() for row in table[2:] if row.strip()]
        assert len(rows) == 10
        assert [r[2] for r in rows if r[1] == "transform-3"] == ["70"]
        assert len(text.rstrip("\n").split("\n")) == len(records) + 1 + 12

    def test_options_bring_back_lifecycle_and_span_lines(self, tmp_path, start_method):
        """console?lifecycle=1&spans=1: started (with when it was built),
        running, finished and exited for every child, and a span per process,
        still in timestamp order."""
        text, events = pipeline(tmp_path, start_method, "console?lifecycle=1&spans=1")
        lines = event_lines(text)
        children = {
            e["target_pid"]: e["target_name"]
            for e in events
            if e["kind"] == "lifecycle" and e["transition"] == "started"
        }
        assert len(children) == 10
        for pid, name in children.items():
            said = [m.group(5) for m in lines if f"{name}[{pid}]" in m.group(5)]
            said += [m.group(5) for m in lines if m.group(4) == str(pid)]
            assert any(
                re.search(r"started \(\w+\), built [\d.]+ ms before", s) for s in said
            ), name
            assert any(s.endswith(" running") for s in said), name
            if name == "transform-3":
                assert any(s.startswith("exited with code 70") for s in said), said
            else:
                assert any(s.endswith("finished returned") for s in said), name
                assert any(s.endswith("exited code 0") for s in said), name
            spans = [m for m in lines if m.group(5).startswith(f"span process {name} ")]
            assert len(spans) == 1, name
        assert not [m for m in lines if " created" in m.group(5)]
        assert_in_time_order(lines)

    def test_the_environment_variable_and_the_level(self, tmp_path):
        """MPTRACE_CONSOLE=lifecycle=1 brings the lifecycle lines back; a level
        of the console's own (warning) leaves the error record and the bad end."""
        text, events = pipeline(tmp_path, "fork", MPTRACE_CONSOLE="lifecycle=1")
        transitions = [
            e
            for e in events
            if e["kind"] == "lifecycle"
            and e["transition"] != "created"  # said on the started line
            and e.get("exitcode") != 70  # the bad end's own line
        ]
        shown = [m for m in event_lines(text) if "lifecycle " in m.group(5)]
        assert len(shown) == len(transitions) == 38
        text, _ = pipeline(
            tmp_path, "fork", "console?level=warning", MPTRACE_CONSOLE="lifecycle=1"
        )
        lines = event_lines(text)
        assert [m.group(2) for m in lines] == ["error", "error"], text
        assert "batch 3 is poisoned" in lines[0].group(5)
        assert lines[1].group(5).startswith("exited with code 70")


ENDINGS = textwrap.dedent(
    """
    import multiprocessing, sys
    import mptrace
    import workers

    if __name__ == "__main__":
        with mptrace.init(exporters=["console"]):
            ctx = mptrace.get_context(sys.argv[1])
            ends = ("return", "raise", "os._exit", "sigkill", "sigsegv")
            children = [
                ctx.Process(target=workers.log_then_exit, args=(0, how), name=how)
                for how in ends
            ]
            for p in children:
                p.start()
            for p in children:
                p.join(60)
            ready = ctx.Event()
            stopped = ctx.Process(target=workers.tr_block, args=(ready,), name="stopped")
            stopped.start()
            ready.wait(60)
            stopped.terminate()
            stopped.join(60)
            with ctx.Pool(2) as pool:  # its workers are terminated by the pool
                assert pool.map(workers.tr_square, range(4)) == [0, 1, 4, 9]
    """
)


class TestEndings:
    def test_one_line_per_bad_end_and_none_for_a_good_one(self, tmp_path, start_method):
        """raise, os._exit, SIGKILL from outside, SIGSEGV: one error line each,
        saying where to look; terminate(): one warning; a clean exit and a
        pool's own workers: nothing."""
        script = tmp_path / "endings.py"
        script.write_text(ENDINGS)
        tests = str(ROOT / "tests")
        text = run([str(script), start_method], tmp_path, PYTHONPATH=tests)
        ends = {
            m.group(3): (m.group(2), m.group(5))
            for m in event_lines(text)
            if m.group(5).startswith(("exited with", "was ", "died of"))
        }
        assert set(ends) == {"raise", "os._exit", "sigkill", "sigsegv", "stopped"}, text
        assert ends["raise"] == (
            "error",
            "exited with code 1 after raising RuntimeError: worker failed on "
            "purpose; its traceback is in the record above",
        )
        assert ends["os._exit"] == (
            "error",
            "exited with code 7; its last records are above",
        )
        assert ends["sigkill"] == (
            "error",
            "was killed by SIGKILL, not by this program; its last records are above",
        )
        assert ends["sigsegv"] == (
            "error",
            "died of SIGSEGV; the stack of every thread is in the record above",
        )
        assert ends["stopped"] == ("warning", "was stopped by terminate() (SIGTERM)")
        assert "Traceback (most recent call last):" in text
        workers_said = [m for m in event_lines(text) if "PoolWorker" in m.group(3)]
        assert len(workers_said) == 4  # their records; nothing of their ends
        assert all("squaring" in m.group(5) for m in workers_said)


class TestOptions:
    @pytest.mark.parametrize(
        "query, expected",
        [
            ("", {}),
            ("lifecycle=1&spans=yes", {"lifecycle": True, "spans": True}),
            ("level=WARNING&progress=off", {"level": 30, "progress": False}),
        ],
    )
    def test_valid(self, query, expected):
        """Flags take 1/true/yes/on or 0/false/no/off; level a level name."""
        assert parse_options(query) == expected

    @pytest.mark.parametrize(
        "query", ["lifecycle=2", "level=loud", "colour=1", "spans=1&spans=0", "a"]
    )
    def test_invalid(self, query):
        """A bad option fails with a sentence saying what console takes."""
        with pytest.raises(ConfigurationError, match="console takes options"):
            parse_options(query)

    def test_exporter_string_and_environment(self, monkeypatch):
        """console?... goes through init()'s check; MPTRACE_CONSOLE is beneath
        it, and a bad value names the variable, at init()."""
        monkeypatch.setenv("MPTRACE_CONSOLE", "lifecycle=1&level=error")
        (spec,) = _options.parse_exporters("console?level=info")
        assert spec.kwargs == {"lifecycle": True, "level": 20}
        monkeypatch.setenv("MPTRACE_CONSOLE", "lifecycle=maybe")
        with pytest.raises(
            ConfigurationError, match="MPTRACE_CONSOLE='lifecycle=maybe'"
        ):
            mptrace.init(exporters=["console"])
        with pytest.raises(ConfigurationError, match="takes no target"):
            _options.parse_exporters("console:somewhere")


class TestTable:
    def test_a_long_table_keeps_failures_and_counts_the_rest(self):
        """Past 10 rows: failed processes kept, the rest one 'N more' row."""
        rows = [
            {"pid": p, "name": f"w{p}", "exit": "0", "errors": 0} for p in range(30)
        ]
        rows[25]["exit"] = "70"
        short = shorten(rows)
        assert len(short) == 10
        assert rows[25] in short
        assert short[-1]["name"] == "21 more" and short[-1]["exit"] == "0 ×21"

    def test_a_failed_process_is_marked_in_its_lines_and_the_table(self):
        """With colours, a child that ended badly wears the red mark on the
        line of its end and in the table, its exit in red; a healthy one and a
        pool's worker stopped by its pool do not."""
        import io

        from mptrace._render.palette import FAIL_MARK

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        if os.environ.get("NO_COLOR"):
            pytest.skip("NO_COLOR is set")
        stream = Tty()
        sink = ConsoleSink(stream, progress=False)
        base = {"kind": "lifecycle", "ts": 1, "process": "Main", "pid": 1}
        sink.export(
            [
                {**base, "transition": "exited", "target_pid": 7, "target_name": "bad",
                 "exitcode": 70},
                {**base, "transition": "exited", "target_pid": 8, "target_name": "good",
                 "exitcode": 0},
                {**base, "transition": "terminated", "target_pid": 9,
                 "target_name": "PoolWorker", "how": "terminate", "by_pool": True},
                {**base, "transition": "exited", "target_pid": 9,
                 "target_name": "PoolWorker", "exitcode": -15, "signal": "SIGTERM"},
            ]
        )  # fmt: skip
        sink.summary(
            [
                {"pid": 7, "name": "bad", "exit": "70", "errors": 0},
                {"pid": 8, "name": "good", "exit": "0", "errors": 0},
                {"pid": 9, "name": "PoolWorker", "exit": "SIGTERM", "errors": 0},
            ]
        )
        sink.shutdown()
        text = stream.getvalue()
        marked = [ln for ln in text.split("\n") if FAIL_MARK in ln]
        assert len(marked) == 2 and all("bad" in ln for ln in marked), text
        red = LEVEL_STYLES["error"]
        assert f"{red}70" in text and f"{red}SIGTERM" not in text
        assert "PoolWorker" in text.split("mptrace: processes")[1]  # in the table
        assert "PoolWorker" not in text.split("mptrace: processes")[0]  # no line
