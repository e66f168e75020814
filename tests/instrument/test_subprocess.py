"""Python programs started with subprocess join the run: a pipeline's stages.

``tests/programs/stages.py`` starts two Python stages with ``subprocess.run``,
one directly and one through a shell; each logs, maps over a Pool of the
start method under test and exits (0, then 3). Under ``mptrace run`` every
stage and pool-worker record, both exit codes, one run id and one trace must
be in the JSON lines; with ``MPTRACE_SUBPROCESS=0`` the stages stay out.
The other tests start programs from a session in this process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from workers import run_python

import mptrace
from mptrace._schema.joinfile import JOIN_VAR
from mptrace._session import reach
from mptrace._session.launch import listener_env

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
STAGE_LINES = sorted(
    [f"stage {name} starts" for name in ("first", "second")]
    + ["stage first ends with 0", "stage second ends with 3"]
    + [f"stage {n} worker item {i}" for n in ("first", "second") for i in range(4)]
)


def run_stages(method: str, out: Path, **env: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "mptrace", "run", "stages.py", method],
        cwd=PROGRAMS,
        env={**os.environ, "MPTRACE_EXPORTERS": f"jsonl:{out}", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "3"]  # the stages' own exit codes
    return read_jsonl(out)


def subprocess_lifecycle(events: list[dict[str, Any]], transition: str) -> list[Any]:
    return [
        e
        for e in events
        if e.get("kind") == "lifecycle"
        and e.get("start_method") == "subprocess"
        and e["transition"] == transition
    ]


class TestStages:
    def test_every_record_both_exits_one_run_one_trace(self, start_method, tmp_path):
        events = run_stages(start_method, tmp_path / "run.jsonl")
        records = logs_of(events, logger="stage")
        assert sorted(r["event"] for r in records) == STAGE_LINES
        # The stages' pool workers are processes of the stages.
        stage_pids = {r["pid"] for r in records if "worker" not in r["event"]}
        assert len(stage_pids) == 2
        workers = [r for r in records if "worker" in r["event"]]
        assert all("PoolWorker" in r["process"] for r in workers)
        assert {r["ppid"] for r in workers} == stage_pids
        # Both exit codes, as the starter's wait() saw them.
        exited = subprocess_lifecycle(events, "exited")
        assert sorted(e["exitcode"] for e in exited) == [0, 3]
        # Only the two stages joined as programs: multiprocessing's own
        # interpreters (spawn children, fork server, resource tracker) did not.
        assert {e["target_pid"] for e in subprocess_lifecycle(events, "running")} == (
            stage_pids
        )
        # One run. (The listener's own records, such as a pool worker
        # terminated during its handshake, belong to no process of the run.)
        ours = [e for e in events if e.get("process") != "mptrace-listener"]
        assert len({e.get("run") for e in ours}) == 1
        spans = [e for e in events if e["kind"] == "span"]
        assert {s["trace_id"] for s in spans} == {r["trace_id"] for r in records}
        assert len({s["trace_id"] for s in spans}) == 1
        assert len([s for s in spans if s["name"] == "task __main__.work"]) == 8
        # A stage's own records sit in the process span its starter made for it.
        programs = {s["span_id"]: s for s in spans if s["name"] == "process stage.py"}
        assert len(programs) == 2
        starts = [r for r in records if r["event"].endswith("starts")]
        assert {r["span_id"] for r in starts} == set(programs)
        codes = sorted(s["attributes"]["process.exit.code"] for s in programs.values())
        assert codes == [0, 3]

    def test_turned_off_the_stages_do_not_join(self, start_method, tmp_path):
        events = run_stages(
            start_method, tmp_path / "run.jsonl", MPTRACE_SUBPROCESS="0"
        )
        assert logs_of(events, logger="stage") == []
        assert subprocess_lifecycle(events, "running") == []


def python_c(code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


LOG_HI = "import logging; logging.getLogger('prog').warning('hi from %s', 'prog')"


class TestFromASession:
    def test_init_option_turns_it_off(self, jsonl):
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], subprocesses=False):
            assert JOIN_VAR not in os.environ
            assert python_c(LOG_HI).returncode == 0
        assert logs_of(read_jsonl(jsonl), logger="prog") == []

    def test_a_bad_switch_fails_at_once_naming_the_variable(self, monkeypatch):
        monkeypatch.setenv("MPTRACE_SUBPROCESS", "sometimes")
        with pytest.raises(mptrace.ConfigurationError, match="MPTRACE_SUBPROCESS"):
            mptrace.init(exporters=["memory"])
        assert mptrace.get_session() is None  # nothing was started

    def test_a_program_joins_and_the_environment_is_put_back(self, jsonl):
        before = os.environ.get("PYTHONPATH")
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            assert python_c(LOG_HI).returncode == 0
        assert os.environ.get("PYTHONPATH") == before
        assert JOIN_VAR not in os.environ
        [record] = logs_of(read_jsonl(jsonl), logger="prog")
        assert record["event"] == "hi from prog"

    def test_a_program_a_child_starts_joins_under_the_childs_span(
        self, start_method, jsonl
    ):
        if start_method == "forkserver":
            # Started before the session: its children have its environment,
            # which names no session.
            multiprocessing.forkserver.ensure_running()
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            child = multiprocessing.get_context(start_method).Process(
                target=run_python, args=(LOG_HI,), name="starter"
            )
            child.start()
            child.join(60)
        assert child.exitcode == 0
        events = read_jsonl(jsonl)
        [record] = logs_of(events, logger="prog")
        spans = {e["name"]: e for e in events if e["kind"] == "span"}
        program, starter = spans["process python -c"], spans["process starter"]
        assert program["parent_span_id"] == starter["span_id"]
        assert record["span_id"] == program["span_id"]
        assert record["ppid"] == child.pid

    def test_no_secret_in_the_environment_or_a_readable_place(self, jsonl):
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as session:
            key = session.child_config.authkey.hex()
            assert not any(key in value for value in os.environ.values())
            path = os.environ[JOIN_VAR]
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            folder = os.path.dirname(path)
            assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
            # The listener, a fresh interpreter too, is never made to join.
            env = listener_env(os.environ)
            assert JOIN_VAR not in env
            assert reach.BOOT not in env.get("PYTHONPATH", "")

    def test_exit_by_signal_and_by_exception(self, jsonl):
        killed = LOG_HI + "; import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            assert python_c(killed).returncode == -9
            assert python_c("raise ValueError('boom')").returncode == 1
        events = read_jsonl(jsonl)
        assert len(logs_of(events, logger="prog")) == 1  # sent before the kill
        exits = sorted(
            (e["exitcode"], e["signal"]) for e in subprocess_lifecycle(events, "exited")
        )
        assert exits == [(-9, "SIGKILL"), (1, None)]
        [finished] = subprocess_lifecycle(events, "finished")  # the killed one: none
        assert finished["outcome"] == "raised"
        assert finished["exc"]["type"] == "ValueError"
        [error] = logs_of(events, level="error")
        assert "uncaught exception" in error["event"]

    def test_a_program_never_waited_for_is_reported_and_still_reaped(self, jsonl):
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"])
            # Wait for its exit without reaping it: the program's wait() will.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert proc.wait(timeout=10) == 5
        [exited] = subprocess_lifecycle(read_jsonl(jsonl), "exited")
        assert (exited["target_pid"], exited["exitcode"]) == (proc.pid, 5)


class TestStartUpHook:
    def test_the_environments_own_sitecustomize_still_runs(self, jsonl, tmp_path):
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        marker = tmp_path / "marker"
        (theirs / "sitecustomize.py").write_text(
            f"open({str(marker)!r}, 'w').write('ran')\n"
        )
        os.environ["PYTHONPATH"] = str(theirs)
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            assert python_c(LOG_HI).returncode == 0
        assert marker.read_text() == "ran"
        assert len(logs_of(read_jsonl(jsonl), logger="prog")) == 1

    def test_a_python_without_mptrace_is_left_alone(self, jsonl):
        base = os.path.join(sys.base_prefix, "bin", "python3")
        probe = [base, "-c", "import mptrace"]
        if sys.prefix == sys.base_prefix or subprocess.run(probe).returncode == 0:
            pytest.skip("needs a Python outside this venv, without mptrace")
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            proc = subprocess.run(
                [base, "-c", "print('ok')"], capture_output=True, text=True, timeout=60
            )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")

    def test_a_program_that_is_not_python_keeps_its_exit(self, jsonl):
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            assert subprocess.run("exit 7", shell=True).returncode == 7
        [exited] = subprocess_lifecycle(read_jsonl(jsonl), "exited")
        assert exited["exitcode"] == 7
