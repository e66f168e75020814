"""Guarantee 3: a dead or stuck listener never hangs the program."""

from __future__ import annotations

import logging
import os
import re
import signal
import time

from workers import log_through_dead_listener

import mptrace

N = 50


def _after_lines(text: str, tag: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if "after death" in line and f"tag={tag}" in line
    ]


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
                        rf"process {p.pid} now writes its records to its own stderr",
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
