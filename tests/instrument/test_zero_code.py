"""Plain multiprocessing, no mptrace import: the sixteen tutorial patterns under every start method.

``tests/programs/tutorial.py`` runs once per start method under ``python -m
mptrace run`` and once with ``mptrace.init()`` added (``tutorial_init.py``,
which leaves its ``with`` block while two never-joined children still run);
the tests read what arrived in the JSON lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import logs_of, read_jsonl

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
#: A traceback line in one of mptrace's own modules.
MPTRACE_FRAME = re.compile(r'File "[^"]*[/\\]mptrace[/\\]_\w+\.py"')
HELLOS = [
    "start/join", "pool 0", "pool 1", "pool 2", "pool 3", "starmap 1", "starmap 3",
    "executor 0", "executor 1", "executor 2", "queue", "pipe", "semaphore 0",
    "semaphore 1", "value/array", "manager", "daemon", "terminate", "exit code",
    "exception", "affinity", "lock 0", "lock 1",
]  # fmt: skip
#: Children started with multiprocessing.Process, by name, and their exit codes.
CODES = {
    "start-join": 0, "queue": 0, "pipe": 0, "semaphore-0": 0, "semaphore-1": 0,
    "value-array": 0, "manager": 0, "daemon": 0, "terminate": -15, "exit-code": 3,
    "exception": 1, "get-logger": 0, "affinity": 0, "lock-0": 0, "lock-1": 0,
}  # fmt: skip


@dataclass
class Run:
    out: dict[str, Any]
    err: str
    events: list[dict[str, Any]]

    def spans(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("kind") == "span"]

    def process_span(self, name: str) -> dict[str, Any]:
        [span] = [s for s in self.spans() if s["name"] == f"process {name}"]
        return span

    def lifecycle(self, name: str) -> dict[str, dict[str, Any]]:
        """The lifecycle records of the child called *name*, by transition."""
        span_id = self.process_span(name)["span_id"]
        return {
            e["transition"]: e
            for e in self.events
            if e.get("kind") == "lifecycle" and e.get("span_id") == span_id
        }


_runs: dict[tuple[str, str], Run] = {}


def tutorial(variant: str, method: str, tmp_path_factory: Any) -> Run:
    """Run the tutorial once per variant and start method; later calls reuse it."""
    key = (variant, method)
    if key not in _runs:
        path = tmp_path_factory.mktemp("tutorial") / "run.jsonl"
        env = {**os.environ, "MPTRACE_EXPORTERS": f"jsonl:{path}"}
        if variant == "run":
            cmd = [sys.executable, "-m", "mptrace", "run", "tutorial.py", method]
        else:
            cmd = [sys.executable, "tutorial_init.py", method]
        proc = subprocess.run(
            cmd, cwd=PROGRAMS, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.splitlines()[-1])
        _runs[key] = Run(out, proc.stderr, read_jsonl(path))
    return _runs[key]


@pytest.fixture(params=["run", "init"], ids=["mptrace-run", "init-added"])
def run(request, start_method, tmp_path_factory) -> Run:
    return tutorial(request.param, start_method, tmp_path_factory)


class TestTutorial:
    def test_the_program_does_what_it_does_without_mptrace(self, run):
        """Results and exit codes are the stdlib's: terminate() gives -15."""
        out = run.out
        assert out["map"] == [0, 1, 4, 9] and out["starmap"] == [2, 12]
        assert out["executor"] == [0, 1, 8]
        assert (out["queue"], out["pipe"]) == ("via queue", "via pipe")
        assert out["value"] == 3.5 and out["array"] == [0, -1, -2]
        assert out["manager"] == [True, ["from child"]] and out["base_manager"] == 1
        assert out["codes"] == {k: v for k, v in CODES.items() if "lock" not in k}

    def test_every_child_log_line_arrives_exactly_once(self, run):
        """Each child's line, the never-joined children's included, once."""
        said = Counter(e["event"] for e in logs_of(run.events, logger="tutorial"))
        assert said == Counter(f"hello from {h}" for h in HELLOS)

    def test_get_logger_records_arrive_once(self, run):
        """multiprocessing.get_logger() does not propagate; its record still arrives, once."""
        found = logs_of(run.events, event="hello from get_logger")
        assert len(found) == 1
        assert found[0]["logger"] == "multiprocessing"
        assert found[0]["process"] == "get-logger"

    def test_exits_as_the_stdlib_gives_them(self, run):
        """Every child's exit, on its lifecycle and its span: SIGTERM for terminate()."""
        for name, code in CODES.items():
            exited = run.lifecycle(name)["exited"]
            assert exited["exitcode"] == code, name
            assert run.process_span(name)["attributes"]["process.exit.code"] == code
        assert run.lifecycle("terminate")["exited"]["signal"] == "SIGTERM"

    def test_every_child_has_its_whole_lifecycle(self, run):
        """created, started, running, finished (but for the terminated one), exited."""
        for name in CODES:
            seen = set(run.lifecycle(name))
            expected = {"created", "started", "running", "finished", "exited"}
            if name == "terminate":
                expected = (expected - {"finished"}) | {"terminated"}
            assert seen == expected, name

    def test_an_exception_has_its_traceback_with_user_frames_only(self, run):
        """Recorded, logged and printed, without mptrace's own frame."""
        finished = run.lifecycle("exception")["finished"]
        assert finished["outcome"] == "raised"
        stack = finished["exc"]["traceback"]
        assert "the child failed on purpose" in stack and "raising_child" in stack
        [logged] = logs_of(run.events, process="exception", level="error")
        assert "raising_child" in logged["exc"]["traceback"]
        for text in (stack, logged["exc"]["traceback"], run.err):
            assert "run_and_report" not in text
            assert not MPTRACE_FRAME.search(text), MPTRACE_FRAME.search(text)

    def test_pool_and_executor_tasks_are_spans(self, run):
        """A span per map chunk, starmap chunk and executor item, under the call's span."""
        spans = run.spans()

        def tasks(func: str) -> list[dict[str, Any]]:
            return [s for s in spans if s["name"].endswith(f".{func}")]

        for func, n, call in (
            ("square", 4, "Pool.map"),
            ("mul", 2, "Pool.starmap"),
            ("cube", 3, "ProcessPoolExecutor.map"),
        ):
            [parent] = [s for s in tasks(func) if s["name"].startswith(call)]
            found = [s for s in tasks(func) if s["name"].startswith("task ")]
            assert len(found) == n, func
            assert {s["parent_span_id"] for s in found} == {parent["span_id"]}

    def test_manager_servers_are_processes_of_the_run(self, run):
        """Manager() and a BaseManager with an authkey: their server processes take part."""
        names = [s["name"] for s in run.spans()]
        assert any(n.startswith("process SyncManager-") for n in names), names
        assert any(n.startswith("process Store-") for n in names), names

    def test_one_run_is_one_trace(self, run):
        """Every span and every child's record is in one trace, under one root."""
        traces = {s["trace_id"] for s in run.spans()}
        traces |= {e["trace_id"] for e in logs_of(run.events, logger="tutorial")}
        assert len(traces) == 1
        roots = [s for s in run.spans() if s["parent_span_id"] is None]
        assert [r["attributes"]["mptrace.span"] for r in roots] == ["run"]
