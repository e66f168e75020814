"""Guarantee 3: a dead or stuck listener never hangs the program."""

from __future__ import annotations

import logging
import os
import re
import signal
import time

import pytest
from conftest import logs_of, read_jsonl
from workers import log_through_dead_listener

import mptrace
from mptrace._participant import participant as _participant
from mptrace._participant import stream as _stream
from mptrace._session import restart as _restart

N = 50


@pytest.fixture
def no_restart(monkeypatch):
    """No new listener is started: a dead one's writers fall back to stderr."""
    monkeypatch.setattr(_restart, "MAX_RESTARTS", 0)


def _after_lines(text: str, tag: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if "after death" in line and f"tag={tag}" in line
    ]


@pytest.mark.usefixtures("no_restart")
class TestListenerKilled:
    def test_children_and_parent_finish_and_log_to_stderr(
        self, start_method, jsonl, capfd, tmp_path
    ):
        """Kill the listener mid-run: same exit codes, every later record on stderr, one warning each."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"], block_timeout=2.0)
        ctx = mptrace.get_context(start_method)
        go = ctx.Event()
        firsts = [ctx.Event() for _ in range(4)]
        children = [
            ctx.Process(
                target=log_through_dead_listener,
                args=(N, f"c{i}", go, firsts[i], str(tmp_path / f"c{i}.err")),
            )
            for i in range(4)
        ]
        for p in children:
            p.start()
        assert all(e.wait(60) for e in firsts)
        os.kill(session.listener_pid, signal.SIGKILL)
        session._proc.wait(10)
        go.set()
        for p in children:
            p.join(60)
        assert [p.exitcode for p in children] == [0, 0, 0, 3]
        t0 = time.monotonic()
        logging.getLogger("parent").info("after death", extra={"tag": "parent"})
        assert time.monotonic() - t0 < 2.0
        session.shutdown()
        parent_err = capfd.readouterr().err
        for p, tag in zip(children, ("c0", "c1", "c2", "c3")):
            err = (tmp_path / f"{tag}.err").read_text()
            assert len(_after_lines(err, tag + "-after")) == N, tag
            assert (
                len(
                    re.findall(
                        rf"process {p.pid} writes its records to its own stderr until",
                        err,
                    )
                )
                == 1
            )
            slowest = re.search(rf"slowest call .*tag={tag}-slowest", err)
            assert slowest, tag
            assert f"{p.name}[{p.pid}]" in err  # rendered, naming the process
        assert len(_after_lines(parent_err, "parent")) == 1

    def test_shutdown_returns_promptly_after_the_listener_died(self, jsonl):
        """shutdown() with a dead listener returns at once instead of waiting."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        os.kill(session.listener_pid, signal.SIGKILL)
        session._proc.wait(10)
        t0 = time.monotonic()
        session.shutdown()
        assert time.monotonic() - t0 < 2.0


@pytest.mark.usefixtures("no_restart")
class TestLossIsCounted:
    @pytest.fixture(autouse=True)
    def _no_lock_waits(self, monkeypatch):
        """The child's wait on the test's Event would be a record of its own
        (a ``lock wait`` span); these tests count the records exactly."""
        monkeypatch.setenv("MPTRACE_WAIT_THRESHOLD", "0")

    def _kill_while_unread(self, start_method, exporters, tmp_path):
        """The listener stops reading, the child writes 100 records, the
        listener is SIGKILLed, the child logs once more: (child, its stderr)."""
        from workers import log_into_a_dying_listener

        session = mptrace.init(exporters=exporters)
        ctx = mptrace.get_context(start_method)
        ready, stopped, written, killed = (ctx.Event() for _ in range(4))
        err_path = tmp_path / "child.err"
        child = ctx.Process(
            target=log_into_a_dying_listener,
            args=(ready, stopped, written, killed, 100, str(err_path)),
        )
        child.start()
        try:
            assert ready.wait(60)
            assert session.force_flush()  # the listener has read all there was
            os.kill(session.listener_pid, signal.SIGSTOP)
            stopped.set()
            assert written.wait(60)
            os.kill(session.listener_pid, signal.SIGKILL)
            session._proc.wait(10)
            killed.set()
            child.join(60)
        finally:
            session.shutdown()
        assert child.exitcode == 0, "the child died of SIGPIPE"
        err = err_path.read_text()
        assert "after death" in err
        return child, err

    def test_records_a_killed_listener_never_wrote_follow_on_stderr(
        self, start_method, jsonl, tmp_path
    ):
        """With files only, the listener acknowledges what is in them: the
        child (SIGPIPE at its default action) lives on, exits 0, says that
        exactly 100 of its records were not written, and gives them on stderr."""
        child, err = self._kill_while_unread(start_method, [f"jsonl:{jsonl}"], tmp_path)
        assert re.search(
            rf"the listener died \(when it was found gone\) before writing 100 "
            rf"records process {child.pid} had sent it; 100 follow on this stderr\.",
            err,
        ), err[-2000:]
        given = sorted(int(i) for i in re.findall(r" unread .*\bi=(\d+)", err))
        assert given == list(range(100)), err[-2000:]

    def test_records_a_killed_listener_never_read_are_counted(
        self, start_method, jsonl, tmp_path
    ):
        """A listener with a console does not acknowledge (its lines wait to be
        ordered): the records it never read from the pipe are counted, exactly."""
        child, err = self._kill_while_unread(
            start_method, [f"jsonl:{jsonl}", "console"], tmp_path
        )
        assert re.search(
            rf"the listener died before reading 100 records \(\d+ bytes\) "
            rf"process {child.pid} had sent it",
            err,
        ), err[-2000:]


class TestNothingLostSilently:
    def test_every_record_of_a_killed_listener_is_in_the_file_on_stderr_or_counted(
        self, start_method, jsonl, tmp_path
    ):
        """Four children log at full speed and the listener is SIGKILLed: each
        child's every record is in the file, on its stderr (given again, or
        sent there after), or in the number it says were lost."""
        from workers import log_with_marks

        n = 20_000
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        ctx = mptrace.get_context(start_method)
        quarters = [ctx.Event() for _ in range(4)]
        killed = ctx.Event()
        children = [
            ctx.Process(
                target=log_with_marks,
                args=(n, f"c{i}", [quarters[i]], str(tmp_path / f"c{i}.err"), killed),
            )
            for i in range(4)
        ]
        for p in children:
            p.start()
        try:
            assert all(e.wait(60) for e in quarters)
            os.kill(session.listener_pid, signal.SIGKILL)
            session._proc.wait(10)
            killed.set()
            for p in children:
                p.join(120)
        finally:
            session.shutdown()
        events = read_jsonl(_whole_lines(jsonl))
        for i, p in enumerate(children):
            assert p.exitcode == 0
            in_file = {e["i"] for e in logs_of(events, pid=p.pid, event="fast")}
            err = (tmp_path / f"c{i}.err").read_text()
            on_stderr = {
                int(m) for m in re.findall(rf" fast .*\bi=(\d+)\b.*tag=c{i}\b", err)
            }
            said_lost = sum(
                int(m) for m in re.findall(r"(\d+) \(past the last \d+ bytes\)", err)
            ) + sum(int(m) for m in re.findall(r"before reading (\d+) record", err))
            missing = set(range(n)) - in_file - on_stderr
            assert len(missing) == said_lost, (
                p.name,
                sorted(missing)[:20],
                err[-1500:],
            )


class TestListenerComesBack:
    def test_a_stalled_listener_gets_its_streams_back_and_stops_promptly(
        self, monkeypatch, jsonl, capfd
    ):
        """A listener stalled past block_timeout, then resumed: the parent's
        stream comes back (later records and a later child's process span reach
        the file), and shutdown is as prompt as ever, without killing it."""
        from workers import log_n

        monkeypatch.setattr(_stream, "RETRY_AFTER", 0.0)  # try again at once
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"], block_timeout=0.3)
        stream = _participant.current().stream
        log = logging.getLogger("parent")
        log.info("before the stall")
        assert session.force_flush()
        os.kill(session.listener_pid, signal.SIGSTOP)
        try:
            for i in range(50):
                log.info("during the stall", extra={"i": i, "pad": "y" * 65536})
                if stream.failed:
                    break
            assert stream.failed, "the stall never filled the pipe"
        finally:
            os.kill(session.listener_pid, signal.SIGCONT)
        log.info("after the stall")
        assert not stream.failed
        child = mptrace.Process(target=log_n, args=(5, "late-child"), name="late")
        child.start()
        child.join(60)
        t0 = time.monotonic()
        session.shutdown()
        assert time.monotonic() - t0 < 3.0
        assert session._proc.returncode == 0, "the listener was killed"
        err = capfd.readouterr().err
        assert "the listener is back" in err
        events = read_jsonl(jsonl)
        assert logs_of(events, event="after the stall")
        assert len(logs_of(events, tag="late-child")) == 5
        assert [s for s in events if s.get("kind") == "span" and "late" in s["name"]]


class TestListenerStuck:
    def test_a_logging_call_waits_at_most_block_timeout(
        self, start_method, jsonl, tmp_path
    ):
        """A listener that stops reading (SIGSTOP): calls give up after block_timeout, then use stderr."""
        from workers import log_big_and_time

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"], block_timeout=0.5)
        listener = session.listener_pid
        ctx = mptrace.get_context(start_method)
        ready = ctx.Event()
        go = ctx.Event()
        err_path = tmp_path / "child.err"
        p = ctx.Process(target=log_big_and_time, args=(ready, go, 8, str(err_path)))
        p.start()
        try:
            assert ready.wait(60)
            os.kill(listener, signal.SIGSTOP)
            go.set()
            p.join(60)
        finally:
            os.kill(listener, signal.SIGCONT)
        assert p.exitcode == 0
        session.shutdown()
        err = err_path.read_text()
        match = re.search(r"slowest big call ([0-9.]+)", err)
        assert match, err[-2000:]
        assert float(match.group(1)) < 0.5 + 0.5
        assert "the listener accepted nothing for 0.5 s" in err


@pytest.mark.usefixtures("no_restart")
class TestSpansAfterDeath:
    def test_a_span_ended_after_the_listener_died_is_rendered_on_stderr(
        self, jsonl, capfd
    ):
        """A span that cannot reach the listener is printed as the console would print it."""

        @mptrace.traced(name="late work")
        def late() -> int:
            return 42

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        os.kill(session.listener_pid, signal.SIGKILL)
        session._proc.wait(10)
        assert late() == 42
        session.shutdown()
        err = capfd.readouterr().err
        assert re.search(r"MainProcess\[\d+\] span late work [0-9.]+ (ms|s) ok", err), (
            err[-2000:]
        )


def _whole_lines(path):
    """*path* less a last line the SIGKILLed listener left half written.

    That record was not acknowledged, so its writer gave it on its stderr:
    it is counted there, not here. Every other line must be whole JSON.
    """
    with open(path, "rb") as f:
        data = f.read()
    cut = data[: data.rfind(b"\n") + 1]
    whole = path.with_name(path.name + ".whole")
    whole.write_bytes(cut)
    return whole


class TestListenerReplaced:
    N = 20_000

    def _run(self, start_method, jsonl, tmp_path, kills):
        """Four children log N records each at full speed; the listener is
        SIGKILLed *kills* times, a quarter in, then half way (each time once
        the one before was replaced, if it was). Returns (children, their
        stderr, the records of each in the file)."""
        from workers import log_with_marks

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        ctx = mptrace.get_context(start_method)
        marks = [[ctx.Event() for _ in range(kills)] for _ in range(4)]
        killed = ctx.Event()
        children = [
            ctx.Process(
                target=log_with_marks,
                args=(self.N, f"c{i}", marks[i], str(tmp_path / f"c{i}.err"), killed),
            )
            for i in range(4)
        ]
        for p in children:
            p.start()
        try:
            for k in range(kills):
                assert all(m[k].wait(120) for m in marks)
                old = session.listener_pid
                os.kill(old, signal.SIGKILL)
                if k + 1 < kills and _restart.MAX_RESTARTS > k:
                    assert session._restarter.wait(k + 1, 30), "no new listener"
                    assert session.listener_pid != old
            killed.set()
            for p in children:
                p.join(120)
        finally:
            session.shutdown()
        # A last line cut by a final kill is no record (its writer said so);
        # a half line anywhere else fails the read.
        events = read_jsonl(_whole_lines(jsonl))
        errs = [(tmp_path / f"c{i}.err").read_text() for i in range(4)]
        in_file = [
            [e["i"] for e in logs_of(events, pid=p.pid, event="fast")] for p in children
        ]
        assert [p.exitcode for p in children] == [0] * 4
        # A listener that takes over is mptrace's own: no program of the run.
        spans = [e.get("name", "") for e in events if e.get("kind") == "span"]
        assert not [n for n in spans if n.startswith("process python")], spans
        return children, errs, in_file

    def _took_over(self, err: str) -> list[tuple[int, int, int]]:
        return [
            tuple(map(int, m))
            for m in re.findall(
                r"the listener died \(SIGKILL\); a new one took over; (\d+) records? "
                r"given again, (\d+) on stderr, (\d+) lost\.",
                err,
            )
        ]

    @pytest.mark.parametrize("kills", [1, 2])
    def test_every_record_is_in_the_file_after_the_listener_is_replaced(
        self, start_method, jsonl, tmp_path, capfd, kills
    ):
        """SIGKILLed once, or twice, at full load: a new listener takes over,
        every record of every child is in the file (those after the kill
        too), none on stderr, none lost; a record is there twice only if it
        was among those given again, and the new listener says so once."""
        children, errs, in_file = self._run(start_method, jsonl, tmp_path, kills)
        owner_err = capfd.readouterr().err
        said = self._took_over(owner_err)
        assert len(said) == 1, said  # the last listener to take over says it
        again, on_stderr, lost = said[0]
        duplicates = 0
        for p, err, got in zip(children, errs, in_file, strict=True):
            missing = sorted(set(range(self.N)) - set(got))
            assert not missing, (
                p.name,
                len(missing),
                missing[:3],
                missing[-3:],
                err[-1500:],
                owner_err[-3000:],
            )
            assert not re.search(r" fast .*\bi=\d+", err), err[-1500:]
            duplicates += len(got) - self.N
        assert (on_stderr, lost) == (0, 0)
        assert duplicates <= again

    def test_an_owner_silent_since_the_restart_ends_the_new_listener(
        self, start_method, jsonl, capfd
    ):
        """The listener dies and is replaced while the owner writes nothing;
        the owner's first write since is at shutdown: it reaches the new
        listener, which ends at once, not killed after the shutdown bound."""
        from workers import block_until

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"], sample_interval=3600)
        ctx = mptrace.get_context(start_method)
        go = ctx.Event()
        child = ctx.Process(target=block_until, args=(go,))
        child.start()
        try:
            assert session.force_flush()
            stream = _participant.current().stream
            old_fd = stream._fd
            os.kill(session.listener_pid, signal.SIGKILL)
            assert session._restarter.wait(1, 30), "no new listener"
            assert stream._fd == old_fd, "the owner wrote since: nothing tested"
            t0 = time.monotonic()
            session.shutdown()
            took = time.monotonic() - t0
        finally:
            go.set()
            child.join(60)
        err = capfd.readouterr().err
        assert f"process {os.getpid()} writes its records" not in err, err
        assert took < 5.0
        # It ends by itself (once the child's stream, if it had one, closed).
        assert session._proc.wait(30) == 0, err
        # The child's span, which the owner ended at shutdown, reached it.
        spans = [s.get("name") for s in read_jsonl(jsonl) if s.get("kind") == "span"]
        assert f"process {child.name}" in spans, spans

    def test_past_the_limit_a_dead_listener_is_not_replaced(
        self, start_method, jsonl, tmp_path, capfd, monkeypatch
    ):
        """With one restart allowed, the second SIGKILL is final: the
        children's later records go to their stderr as before there were
        restarts, and each record is in the file, on stderr, or counted."""
        monkeypatch.setattr(_restart, "MAX_RESTARTS", 1)
        children, errs, in_file = self._run(start_method, jsonl, tmp_path, 2)
        for p, err, got in zip(children, errs, in_file, strict=True):
            on_stderr = {int(m) for m in re.findall(r" fast .*\bi=(\d+)\b", err)}
            assert on_stderr, (p.name, err[-1500:])  # the fallback, as before
            said_lost = sum(
                int(m) for m in re.findall(r"(\d+) \(past the last \d+ bytes\)", err)
            ) + sum(int(m) for m in re.findall(r"before reading (\d+) record", err))
            missing = set(range(self.N)) - set(got) - on_stderr
            assert len(missing) == said_lost, (p.name, sorted(missing)[:20])
