"""The life of a child process: its exit on its process span and in lifecycle records.

One run per start method starts a child for every way of ending (return,
raise, sys.exit, os._exit, terminate(), kill(), SIGKILL from outside, a
segfault); the tests then check what arrived in the JSON lines.
"""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import START_METHODS, logs_of, read_jsonl
from workers import (
    log_then_exit,
    tr_block,
    tr_leave_grandchild,
    tr_raise_chained,
    tr_write_fd,
)

import mptrace

#: How each child ends, and the exit code the stdlib reports for it.
EXITS = {
    "return": 0,
    "raise": 1,
    "sys.exit": 3,
    "os._exit": 7,
    "terminate": -signal.SIGTERM,
    "kill": -signal.SIGKILL,
    "sigkill": -signal.SIGKILL,
    "sigsegv": -signal.SIGSEGV,
}
SIGNALS = {
    "terminate": "SIGTERM",
    "kill": "SIGKILL",
    "sigkill": "SIGKILL",
    "sigsegv": "SIGSEGV",
}
#: Ends the parent asked for: not errors.
ASKED = {"terminate", "kill"}


@dataclass
class Run:
    method: str
    events: list[dict[str, Any]]
    codes: dict[str, int | None]
    pids: dict[str, int]
    parent_pid: int

    def span(self, how: str) -> dict[str, Any]:
        found = [
            e
            for e in self.events
            if e.get("kind") == "span" and e["name"] == f"process exit-{how}"
        ]
        assert len(found) == 1, f"{len(found)} process spans for {how}"
        return found[0]

    def lifecycle(self, how: str) -> list[dict[str, Any]]:
        """Every lifecycle record of the child, by its process span's id, in order of ts."""
        span_id = self.span(how)["span_id"]
        records = [
            e
            for e in self.events
            if e.get("kind") == "lifecycle" and e.get("span_id") == span_id
        ]
        return sorted(records, key=lambda e: e["ts"])

    def record(self, how: str, transition: str) -> dict[str, Any]:
        [found] = [e for e in self.lifecycle(how) if e["transition"] == transition]
        return found


@pytest.fixture(scope="module", params=START_METHODS)
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """One session per start method: a child for every way of ending, all joined."""
    method = request.param
    path = tmp_path_factory.mktemp(f"exits-{method}") / "events.jsonl"
    session = mptrace.init(exporters=[f"jsonl:{path}"])
    ctx = mptrace.get_context(method)
    children, readies = {}, {}
    try:
        for how in EXITS:
            if how in ("terminate", "kill", "sigkill"):
                readies[how] = ctx.Event()
                target, args = tr_block, (readies[how],)
            elif how == "raise":
                target, args = tr_raise_chained, ()
            else:
                target, args = log_then_exit, (0, how)
            children[how] = ctx.Process(target=target, args=args, name=f"exit-{how}")
        for p in children.values():
            p.start()
        for how, ready in readies.items():
            assert ready.wait(60), f"{how} child never got ready"
        children["terminate"].terminate()
        children["kill"].kill()
        os.kill(children["sigkill"].pid, signal.SIGKILL)
        for p in children.values():
            p.join(60)
        codes = {how: p.exitcode for how, p in children.items()}
        assert not [how for how, p in children.items() if p.is_alive()]
    finally:
        for p in children.values():
            if p.pid is not None and p.exitcode is None:
                p.kill()
                p.join(10)
        session.shutdown()
    return Run(
        method,
        read_jsonl(path),
        codes,
        {how: p.pid for how, p in children.items()},
        os.getpid(),
    )


class TestExitCodes:
    @pytest.mark.parametrize("how", list(EXITS))
    def test_the_program_sees_the_stdlib_exit_code(self, run, how):
        """join() returns and exitcode is what multiprocessing alone would say."""
        assert run.codes[how] == EXITS[how]

    @pytest.mark.parametrize("how", list(EXITS))
    def test_process_span_says_how_the_child_ended(self, run, how):
        """Exit code, signal name, terminated flag and status on the child's process span."""
        span = run.span(how)
        attrs = span["attributes"]
        assert attrs["mptrace.span"] == "process"
        assert attrs["process.pid"] == run.pids[how]
        assert attrs["process.parent_pid"] == run.parent_pid
        assert attrs["mptrace.start_method"] == run.method
        assert attrs["process.exit.code"] == EXITS[how]
        assert attrs.get("mptrace.exit.signal") == SIGNALS.get(how)
        assert attrs.get("mptrace.terminated", False) is (how in ASKED)
        if how == "return" or how in ASKED:
            assert span["status"] != "error", span["status_message"]
        else:
            assert span["status"] == "error"
            assert span["status_message"]
        if how == "sigkill":
            assert "SIGKILL" in span["status_message"]
        [exited] = [e for e in span["events"] if e["name"] == "exited"]
        assert exited["attributes"]["process.exit.code"] == EXITS[how]
        assert exited["attributes"].get("mptrace.exit.signal") == SIGNALS.get(how)
        assert span["end_ns"] >= exited["ts"] >= span["start_ns"]

    @pytest.mark.parametrize("how", list(EXITS))
    def test_exited_record_says_how_the_child_ended(self, run, how):
        """The "exited" lifecycle record: exit code and signal name, from the parent."""
        exited = run.record(how, "exited")
        assert exited["target_pid"] == run.pids[how]
        assert exited["target_name"] == f"exit-{how}"
        assert exited["start_method"] == run.method
        assert exited["exitcode"] == EXITS[how]
        assert exited["signal"] == SIGNALS.get(how)
        assert exited["pid"] == run.parent_pid
        assert exited["trace_id"] == run.span(how)["trace_id"]


class TestCrash:
    def test_segfault_stack_is_on_the_span_and_in_an_error_record(self, run):
        """SIGSEGV: the child's Python stack on the "exited" event and record, and an ERROR log."""
        span = run.span("sigsegv")
        [exited] = [e for e in span["events"] if e["name"] == "exited"]
        crash = exited["attributes"]["mptrace.exit.crash"]
        assert "Segmentation fault" in crash
        assert "log_then_exit" in crash and "workers.py" in crash, crash
        assert run.record("sigsegv", "exited")["crash"] == crash
        pid = run.pids["sigsegv"]
        [error] = [
            r
            for r in logs_of(run.events, level="error", logger="mptrace.process")
            if r.get("crash_pid") == pid
        ]
        assert "SIGSEGV" in error["event"] and f"pid {pid}" in error["event"]
        assert "log_then_exit" in error["event"]

    def test_other_exits_carry_no_crash(self, run):
        """Only a crash signal reads a crash stack."""
        for how in EXITS:
            if how == "sigsegv":
                continue
            [exited] = [e for e in run.span(how)["events"] if e["name"] == "exited"]
            assert "mptrace.exit.crash" not in exited["attributes"], how
            assert "crash" not in run.record(how, "exited"), how


class TestProcessExceptions:
    def test_process_span_has_the_exception_with_its_chained_cause(self, run):
        """A child that raises: "exception" event with type, message and the whole chained traceback."""
        span = run.span("raise")
        assert span["status"] == "error"
        [exc] = [e for e in span["events"] if e["name"] == "exception"]
        attrs = exc["attributes"]
        assert attrs["exception.type"] == "RuntimeError"
        assert attrs["exception.message"] == "outer failure of the child"
        stack = attrs["exception.stacktrace"]
        assert "tr_raise_chained" in stack
        assert "KeyError: 'inner cause of the child'" in stack
        assert "direct cause of the following exception" in stack
        assert stack.index("KeyError") < stack.index(
            "RuntimeError: outer failure of the child"
        )

    def test_finished_record_and_error_log_carry_the_exception(self, run):
        """The child says "finished" by raising, and logs the uncaught exception as an ERROR."""
        finished = run.record("raise", "finished")
        assert finished["outcome"] == "raised"
        assert finished["exitcode"] == 1
        assert finished["exc"]["type"] == "RuntimeError"
        assert "inner cause of the child" in finished["exc"]["traceback"]
        pid = run.pids["raise"]
        [error] = logs_of(run.events, level="error", pid=pid)
        assert "raised an uncaught exception" in error["event"]
        assert error["exc"]["type"] == "RuntimeError"
        assert "KeyError: 'inner cause of the child'" in error["exc"]["traceback"]
        assert error["trace_id"] == run.span("raise")["trace_id"]
        assert error["span_id"] == run.span("raise")["span_id"]


class TestLifecycleRecords:
    def test_transitions_arrive_in_order(self, run):
        """created, started, running, finished, exited: in that order of ts, each once."""
        records = run.lifecycle("return")
        assert [r["transition"] for r in records] == [
            "created",
            "started",
            "running",
            "finished",
            "exited",
        ]
        created, started, running, finished, exited = records
        assert created["target_pid"] is None, "no pid before start()"
        pid = run.pids["return"]
        assert all(r["target_pid"] == pid for r in records[1:])
        assert all(r["target_name"] == "exit-return" for r in records)
        # The parent sees created, started and exited; the child says running and finished.
        assert [r["pid"] for r in records] == [
            run.parent_pid,
            run.parent_pid,
            pid,
            pid,
            run.parent_pid,
        ]
        assert finished["outcome"] == "returned" and finished["exitcode"] == 0
        assert "exc" not in finished

    def test_resource_use_on_finished_and_exited(self, run):
        """CPU seconds and peak RSS: the child's own on "finished", the parent's sample on "exited"."""
        for transition in ("finished", "exited"):
            record = run.record("return", transition)
            assert (
                isinstance(record["cpu_user_s"], float) and record["cpu_user_s"] >= 0
            ), transition
            assert (
                isinstance(record["cpu_system_s"], float)
                and record["cpu_system_s"] >= 0
            ), transition
            assert (
                isinstance(record["peak_rss_bytes"], int)
                and record["peak_rss_bytes"] > 0
            ), transition
        # The child's own getrusage: a Python interpreter is well over a megabyte.
        assert run.record("return", "finished")["peak_rss_bytes"] > 1_000_000
        # The parent samples with psutil: a short child may be seen only as it starts.
        assert run.record("return", "exited")["threads"] >= 1
        attrs = run.span("return")["attributes"]
        assert attrs["mptrace.process.memory.peak_rss"] > 1_000_000
        assert (
            attrs["mptrace.process.cpu.user"] >= 0
            and attrs["mptrace.process.threads.max"] >= 1
        )

    @pytest.mark.parametrize("how", ["terminate", "kill"])
    def test_terminate_and_kill_are_recorded(self, run, how):
        """terminate() / kill(): a "terminated" record and span event between started and exited."""
        transitions = [r["transition"] for r in run.lifecycle(how)]
        assert transitions[:3] == ["created", "started", "running"]
        assert transitions[-2:] == ["terminated", "exited"]
        assert run.record(how, "terminated")["how"] == how
        names = [e["name"] for e in run.span(how)["events"]]
        assert names.index("terminated") < names.index("exited")

    def test_sigkill_from_outside_is_not_a_termination(self, run):
        """A SIGKILL nobody asked mptrace for: no "terminated" record, no finished."""
        transitions = [r["transition"] for r in run.lifecycle("sigkill")]
        assert transitions == ["created", "started", "running", "exited"]

    @pytest.mark.parametrize("how", list(EXITS))
    def test_span_events_mirror_the_transitions(self, run, how):
        """The process span's events are the lifecycle transitions, in order of time."""
        span = run.span(how)
        names = [e["name"] for e in span["events"] if e["name"] not in ("exception",)]
        assert names == [r["transition"] for r in run.lifecycle(how)]
        stamps = [e["ts"] for e in span["events"]]
        assert stamps == sorted(stamps)


def spans_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("kind") == "span" and e["name"] == name]


class TestManyShortChildren:
    def test_every_process_span_carries_the_childs_own_account(
        self, start_method, session, jsonl
    ):
        """10 children that return at once: each process span has running, finished and the child's RSS."""
        ctx = mptrace.get_context(start_method)
        children = [
            ctx.Process(target=log_then_exit, args=(0, "return"), name=f"short-{i}")
            for i in range(10)
        ]
        for p in children:
            p.start()
        for p in children:
            p.join(60)
        assert [p.exitcode for p in children] == [0] * 10
        session.shutdown()
        events = read_jsonl(jsonl)
        for p in children:
            [span] = spans_named(events, f"process {p.name}")
            names = [e["name"] for e in span["events"]]
            assert names == ["created", "started", "running", "finished", "exited"], (
                p.name,
                names,
            )
            assert span["attributes"]["mptrace.process.memory.peak_rss"] > 1_000_000, (
                p.name
            )


class TestJoinThenClose:
    def test_close_after_join_keeps_every_process_span(
        self, start_method, session, jsonl
    ):
        """p.join(); p.close() right away (as the stdlib recommends): no process span or exit is lost."""
        ctx = mptrace.get_context(start_method)
        children = [
            ctx.Process(target=log_then_exit, args=(0, "return"), name=f"closed-{i}")
            for i in range(6)
        ]
        for p in children:
            p.start()
        pids = {}
        for p in children:
            p.join(60)
            assert p.exitcode == 0
            pids[p.name] = p.pid
            p.close()
        session.shutdown()
        events = read_jsonl(jsonl)
        assert not [
            r["event"]
            for r in logs_of(events, logger="mptrace.process", level="warning")
        ]
        for name, pid in pids.items():
            [span] = spans_named(events, f"process {name}")
            assert span["attributes"]["process.exit.code"] == 0, name
            exited = [
                e
                for e in events
                if e.get("kind") == "lifecycle"
                and e["transition"] == "exited"
                and e["target_pid"] == pid
            ]
            assert len(exited) == 1, name


class TestExitSeenWithoutTheSentinel:
    def test_a_joined_child_whose_grandchild_lives_on_is_not_running_at_shutdown(
        self, start_method, session, jsonl
    ):
        """The child exits (and is joined) while a plain os.fork grandchild keeps its
        descriptors open: its span still gets the exit code, not "session ended while running"."""
        ctx = mptrace.get_context(start_method)
        release = ctx.Event()
        p = ctx.Process(
            target=tr_leave_grandchild, args=(release,), name="leaves-grandchild"
        )
        try:
            p.start()
            # join() with no timeout waits for the child itself (waitpid); with a
            # timeout the stdlib would wait on the sentinel, which the grandchild holds.
            p.join()
            assert p.exitcode == 0
            session.shutdown()
        finally:
            release.set()
        events = read_jsonl(jsonl)
        [span] = spans_named(events, "process leaves-grandchild")
        names = [e["name"] for e in span["events"]]
        assert "session ended while running" not in names, names
        assert span["attributes"].get("process.exit.code") == 0
        assert [
            e["exitcode"]
            for e in events
            if e.get("kind") == "lifecycle" and e["transition"] == "exited"
        ] == [0]


_parent_hold: dict[str, int | None] = {"fd": None}
_hook_registered = False


def _hold_parent_after_fork() -> None:
    """at-fork hook: while armed, the parent stays in fork() until the child's target runs."""
    fd = _parent_hold["fd"]
    if fd is not None:
        select.select([fd], [], [], 10)


class TestStartedBeforeRunning:
    def test_started_precedes_running_however_late_the_parent_returns_from_fork(
        self, session, jsonl
    ):
        """fork, with the parent held in fork() until the child runs: "started" is still before "running"."""
        global _hook_registered
        if not _hook_registered:
            os.register_at_fork(after_in_parent=_hold_parent_after_fork)
            _hook_registered = True
        r, w = os.pipe()
        try:
            p = mptrace.get_context("fork").Process(
                target=tr_write_fd, args=(w,), name="late-parent"
            )
            _parent_hold["fd"] = r
            try:
                p.start()
            finally:
                _parent_hold["fd"] = None
            assert select.select([r], [], [], 30)[0], "the child's target never ran"
            assert os.read(r, 1) == b"r"
            p.join(60)
        finally:
            os.close(r)
            os.close(w)
        assert p.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        [span] = spans_named(events, "process late-parent")
        records = sorted(
            (
                e
                for e in events
                if e.get("kind") == "lifecycle" and e.get("span_id") == span["span_id"]
            ),
            key=lambda e: e["ts"],
        )
        assert [r["transition"] for r in records] == [
            "created",
            "started",
            "running",
            "finished",
            "exited",
        ]
        names = [e["name"] for e in span["events"]]
        assert names == ["created", "started", "running", "finished", "exited"]


class TestDaemonChildren:
    def test_a_daemon_child_is_traced_like_any_other(
        self, start_method, session, jsonl
    ):
        """daemon=True: a process span with mptrace.daemon true, its exit code, its records."""
        from workers import wait_then_log

        ctx = mptrace.get_context(start_method)
        go = ctx.Event()
        go.set()
        p = ctx.Process(target=wait_then_log, args=(go, "daemon-done"), daemon=True)
        p.start()
        p.join(60)
        assert p.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        (span,) = [
            e
            for e in events
            if e.get("kind") == "span"
            and e["attributes"].get("process.pid") == p.pid
            and e["attributes"].get("mptrace.span") == "process"
        ]
        assert span["attributes"]["mptrace.daemon"] is True
        assert span["attributes"]["process.exit.code"] == 0
        assert logs_of(events, tag="daemon-done", pid=p.pid)

    def test_a_daemon_still_running_at_shutdown_gets_a_closed_span(
        self, start_method, jsonl
    ):
        """A daemon child alive at shutdown: its span ends, saying the session ended while it ran."""
        from workers import wait_then_log

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        ctx = mptrace.get_context(start_method)
        go = ctx.Event()
        p = ctx.Process(target=wait_then_log, args=(go, "late"), daemon=True)
        p.start()
        try:
            session.shutdown()
        finally:
            go.set()
            p.join(60)
        assert p.exitcode == 0
        events = read_jsonl(jsonl)
        (span,) = [
            e
            for e in events
            if e.get("kind") == "span" and e["attributes"].get("process.pid") == p.pid
        ]
        assert "session ended while running" in [ev["name"] for ev in span["events"]]
        assert "process.exit.code" not in span["attributes"]


START_METHOD_PROGRAM = """
import multiprocessing, sys
import mptrace

def nothing():
    pass

if __name__ == "__main__":
    if sys.argv[2] != "default":
        multiprocessing.set_start_method(sys.argv[2])
    with mptrace.init(exporters=[f"jsonl:{sys.argv[1]}"]):
        p = mptrace.Process(target=nothing)  # the first of the run
        p.start()
        p.join(60)
    print(multiprocessing.get_start_method())
"""


class TestFirstProcessStartMethod:
    @pytest.mark.parametrize("method", ["default", *START_METHODS])
    def test_the_first_process_knows_its_start_method(self, tmp_path, method):
        """The first mptrace.Process of a run, before any context is resolved
        (the default, or one set_start_method chose), says its real start
        method on created and started and on its span (it once said '?')."""
        import subprocess
        import sys

        script = tmp_path / "first.py"
        script.write_text(START_METHOD_PROGRAM)
        out = tmp_path / "run.jsonl"
        proc = subprocess.run(
            [sys.executable, str(script), str(out), method],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        used = proc.stdout.strip()
        assert used in START_METHODS and (method == "default" or used == method)
        events = read_jsonl(out)
        said = [
            e["start_method"]
            for e in events
            if e["kind"] == "lifecycle" and e["transition"] in ("created", "started")
        ]
        assert said == [used, used]
        (span,) = [
            e
            for e in events
            if e["kind"] == "span" and e["name"] == "process Process-1"
        ]
        assert span["attributes"]["mptrace.start_method"] == used
