"""Guarantee 1: every record whose logging call returned reaches the listener."""

from __future__ import annotations

import signal
import sys

import pytest
from conftest import logs_of, read_jsonl
from workers import log_then_exit

import mptrace

N = 1000

EXITS = {
    "return": 0,
    "raise": 1,
    "sys.exit": 3,
    "os._exit": 7,
    "sigterm": -signal.SIGTERM,
    "sigkill": -signal.SIGKILL,
    "sigsegv": -signal.SIGSEGV,
}


class TestNothingLost:
    @pytest.mark.parametrize("how", list(EXITS))
    def test_every_record_arrives_whatever_the_exit(
        self, start_method, session, jsonl, how
    ):
        """A child that logs N records and then leaves by *how* delivers all N, in order."""
        ctx = mptrace.get_context(start_method)
        children = [ctx.Process(target=log_then_exit, args=(N, how)) for _ in range(2)]
        for p in children:
            p.start()
        for p in children:
            p.join(60)
        assert [p.exitcode for p in children] == [EXITS[how]] * 2
        session.shutdown()
        events = read_jsonl(jsonl)
        for p in children:
            records = logs_of(events, pid=p.pid, event="record")
            assert len(records) == N, f"{how}: {len(records)} of {N} from pid {p.pid}"
            assert sorted(r["i"] for r in records) == list(range(N))
            seqs = [r["seq"] for r in logs_of(events, pid=p.pid)]
            assert seqs == sorted(seqs)
        assert not [e for e in events if "lost from pid" in str(e.get("event"))]

    def test_parent_records_arrive(self, session, jsonl):
        """The session's own process is funnelled too, stdlib and structlog alike."""
        import logging

        logging.getLogger("parent").warning("from the parent %s", "stdlib")
        mptrace.get_logger("parent.s").info("from the parent", via="structlog")
        session.shutdown()
        events = read_jsonl(jsonl)
        assert logs_of(
            events, event="from the parent stdlib", level="warning", logger="parent"
        )
        assert logs_of(
            events, event="from the parent", via="structlog", logger="parent.s"
        )


class TestNested:
    def test_children_of_children_participate(self, start_method, session, jsonl):
        """A child started through mptrace starts its own child: both are funnelled."""
        from workers import nested

        p = mptrace.get_context(start_method).Process(
            target=nested, args=(3, start_method, 50)
        )
        p.start()
        p.join(60)
        assert p.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        pids = set()
        for depth in (1, 2, 3):
            records = logs_of(events, tag=f"depth-{depth}")
            assert len(records) == 50, depth
            pids.add(records[0]["pid"])
        assert len(pids) == 3
        by_depth = {d: logs_of(events, tag=f"depth-{d}")[0] for d in (1, 2, 3)}
        assert by_depth[2]["ppid"] == by_depth[3]["pid"]
        assert by_depth[1]["ppid"] == by_depth[2]["pid"]


class TestPlainForkChildren:
    @pytest.mark.skipif(sys.platform != "linux", reason="fork")
    def test_a_plain_fork_child_participates(self, session, jsonl):
        """A child forked by plain multiprocessing inherits the funnel and reconnects."""
        import multiprocessing

        p = multiprocessing.get_context("fork").Process(
            target=log_then_exit, args=(100, "os._exit")
        )
        p.start()
        p.join(60)
        assert p.exitcode == 7
        session.shutdown()
        assert len(logs_of(read_jsonl(jsonl), pid=p.pid, event="record")) == 100
