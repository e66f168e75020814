"""``mptrace run``, the exit path, configuration from the environment, and every logger.

Programs under ``tests/programs`` run in a subprocess, as a user runs them;
the rest runs a session in the test process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.process
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from workers import block_until, log_after

import mptrace
from mptrace import ConfigurationError

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def mptrace_run(
    args: list[str], jsonl: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mptrace", "run", *args],
        cwd=PROGRAMS,
        env={**os.environ, "MPTRACE_EXPORTERS": f"jsonl:{jsonl}", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spans(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("kind") == "span"]


class TestRunner:
    def test_a_module_runs_as_python_m_would_run_it(self, start_method, jsonl):
        """-m: argv, __main__, its exit status, a spawn child that re-imports it,
        a Pool started at import, TRACEPARENT in and out."""
        tp = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        proc = mptrace_run(
            ["-m", "echo", start_method, "5", "--level", "x"], jsonl, TRACEPARENT=tp
        )
        assert proc.returncode == 5, proc.stderr
        out = json.loads(proc.stdout)
        assert out["argv"] == [
            str(PROGRAMS / "echo.py"),
            start_method,
            "5",
            "--level",
            "x",
        ]
        assert out["name"] == "__main__" and out["child_code"] == 0
        assert out["import_pool"] == [3, 2, 1]
        found = spans(read_jsonl(jsonl))
        # The caller's trace holds the run; the run holds everything else.
        [root] = [s for s in found if s["attributes"].get("mptrace.span") == "run"]
        assert (root["trace_id"], root["parent_span_id"]) == (CALLER_TRACE, CALLER_SPAN)
        assert root["name"] == "echo"
        assert {s["trace_id"] for s in found} == {CALLER_TRACE}
        # A subprocess of the program, and of a child, sees the span its
        # starter made for it, under the starter's own.
        programs = {s["span_id"]: s for s in found if s["name"] == "process python -c"}
        [child] = [s for s in found if s["name"] == "process env-child"]
        for tp, starter in ((out["main_tp"], root), (out["child_tp"], child)):
            version, trace_id, span_id, flags = tp.split("-")
            assert trace_id == CALLER_TRACE
            assert programs[span_id]["parent_span_id"] == starter["span_id"]
        # The Pool a module started at import: its tasks are spans of the run.
        [the_map] = [s for s in found if s["name"] == "Pool.map abs"]
        assert the_map["parent_span_id"] == root["span_id"]
        assert len([s for s in found if s["name"] == "task abs"]) == 3

    def test_an_uncaught_exception_exits_1_with_the_programs_traceback(self, jsonl):
        """As python prints it: no runner or runpy frame; also recorded."""
        proc = mptrace_run(["fails.py"], jsonl)
        assert proc.returncode == 1
        printed = proc.stderr[proc.stderr.index("Traceback") :]
        frames = [line for line in printed.splitlines() if line.startswith("  File")]
        assert frames == [
            '  File "fails.py", line 8, in <module>',
            '  File "fails.py", line 5, in deep',
        ], printed
        [record] = logs_of(read_jsonl(jsonl), level="error")
        assert "LookupError: not found on purpose" in record["exc"]["traceback"]
        assert "runpy" not in record["exc"]["traceback"]

    def test_a_program_calling_init_joins_the_runners_session(self, jsonl):
        """tutorial_init.py calls mptrace.init(): under run, one session, one file."""
        proc = mptrace_run(["tutorial_init.py", "fork"], jsonl)
        assert proc.returncode == 0, proc.stderr
        events = read_jsonl(jsonl)
        assert len(logs_of(events, event="hello from start/join")) == 1
        assert len({e["run"] for e in events if "run" in e}) == 1

    def test_a_bad_variable_is_a_usage_error_naming_it(self, jsonl):
        proc = mptrace_run(["fails.py"], jsonl, MPTRACE_LEVEL="loud")
        assert proc.returncode == 2
        assert "MPTRACE_LEVEL='loud'" in proc.stderr and "Valid levels" in proc.stderr

    def test_a_missing_script_is_a_usage_error(self, jsonl):
        proc = mptrace_run(["no_such_script.py"], jsonl)
        assert proc.returncode == 2 and "no such file" in proc.stderr


class TestExit:
    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_a_manager_left_running_does_not_hang_the_exit(self, method, jsonl):
        """init() without with, a Manager never shut down: exits at once, as without mptrace."""
        env = {**os.environ, "MPTRACE_EXPORTERS": f"jsonl:{jsonl}"}
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "manager_at_exit.py", method],
            cwd=PROGRAMS, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        took = time.monotonic() - began
        assert proc.returncode == 0 and proc.stdout == "1\n", proc.stderr
        assert took < 15, took
        [server] = [s for s in spans(read_jsonl(jsonl)) if "SyncManager" in s["name"]]
        assert server["attributes"]["process.exit.code"] == 0

    def test_leaving_with_keeps_a_running_childs_records(self, start_method, jsonl):
        """A plain child nobody joins logs after the with block ends: nothing is lost."""
        ctx = multiprocessing.get_context(start_method)
        go = ctx.Event()
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            p = ctx.Process(target=log_after, args=(go, 300), name="late")
            p.start()
            go.set()
        p.join(60)
        events = read_jsonl(jsonl)
        assert len(logs_of(events, event="after", process="late")) == 300
        exited = [e for e in events if e.get("transition") == "exited"]
        assert [e["exitcode"] for e in exited] == [0]

    def test_a_child_started_before_init_is_named(self, jsonl):
        """Not silently missed: the end of the run names the process mptrace could not join."""
        ctx = multiprocessing.get_context("fork")
        go = ctx.Event()
        p = ctx.Process(target=block_until, args=(go,), name="early-bird")
        p.start()
        try:
            mptrace.init(exporters=[f"jsonl:{jsonl}"]).shutdown()
        finally:
            go.set()
            p.join(60)
        [warning] = logs_of(
            read_jsonl(jsonl), level="warning", logger="mptrace.session"
        )
        assert f"early-bird (pid {p.pid})" in warning["event"]


class TestInstrument:
    def test_init_instruments_and_shutdown_puts_the_stdlib_back(self, jsonl):
        base = multiprocessing.process.BaseProcess
        original = base.start
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        assert base.start is not original
        session.shutdown()
        assert base.start is original

    def test_instrument_false_leaves_plain_processes_alone(self, jsonl):
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], instrument=False):
            p = multiprocessing.get_context("fork").Process(target=print, name="plain")
            p.start()
            p.join(60)
        assert not [s for s in spans(read_jsonl(jsonl)) if s["name"] == "process plain"]


class TestEnvironment:
    def test_exporters_and_level_come_from_the_environment(self, jsonl, monkeypatch):
        monkeypatch.setenv("MPTRACE_EXPORTERS", f" jsonl:{jsonl} ,")
        monkeypatch.setenv("MPTRACE_LEVEL", "warning")
        with mptrace.init():
            logging.getLogger("tests.env").info("below the level")
            logging.getLogger("tests.env").warning("at the level")
        said = [e["event"] for e in logs_of(read_jsonl(jsonl), logger="tests.env")]
        assert said == ["at the level"]

    def test_an_argument_wins_over_its_variable(self, jsonl, tmp_path, monkeypatch):
        monkeypatch.setenv("MPTRACE_EXPORTERS", f"jsonl:{tmp_path / 'other.jsonl'}")
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            logging.getLogger("tests.env").warning("here")
        assert logs_of(read_jsonl(jsonl), event="here")
        assert not (tmp_path / "other.jsonl").exists()

    @pytest.mark.parametrize(
        "name, value, says",
        [
            ("MPTRACE_LEVEL", "loud", "Valid levels"),
            ("MPTRACE_EXPORTERS", "console,nowhere", "nowhere"),
            ("MPTRACE_INSTRUMENT", "maybe", "Valid values are 1, true"),
        ],
    )
    def test_a_bad_value_fails_at_once_naming_the_variable(
        self, name, value, says, monkeypatch
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError) as info:
            mptrace.init()
        assert f"{name}={value!r}" in str(info.value) and says in str(info.value)
        assert mptrace.get_session() is None


class TestEveryLogger:
    def test_a_non_propagating_logger_reaches_the_funnel_once(self, session, jsonl):
        """Its own handler gets what it gets without mptrace; the funnel gets each once."""
        seen: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
        alone = logging.getLogger("tests.alone")
        alone.propagate = False
        alone.addHandler(handler)
        try:
            alone.info("kept to itself")
            alone.debug("below its level")
            logging.getLogger("tests.alone.child").warning("from below it")
            logging.getLogger("tests.along").info("propagates as usual")
        finally:
            alone.removeHandler(handler)
            alone.propagate = True
        session.shutdown()
        events = read_jsonl(jsonl)
        # Without mptrace the root's WARNING bounds the logger: its handler
        # sees the warning alone, with mptrace at DEBUG as well.
        assert seen == ["from below it"]
        for message in ("kept to itself", "below its level", "from below it",
                        "propagates as usual"):  # fmt: skip
            assert len(logs_of(events, event=message)) == 1, message

    def test_after_shutdown_the_stdlib_is_as_it_was(self, session):
        session.shutdown()
        assert logging.Logger.callHandlers.__module__ == "logging"
