"""Guarantee 2: no process can wedge another; losses are counted and reported."""

from __future__ import annotations

import os
import signal
import time

from conftest import logs_of, read_jsonl
from workers import log_forever, log_n

import mptrace
from mptrace._schema import events as _events
from mptrace._schema import handshake as _handshake

MIB = 1024 * 1024


class TestKilledMidWrite:
    def test_a_child_killed_mid_write_costs_only_its_own_record(
        self, start_method, session, jsonl
    ):
        """SIGKILL a child writing 1 MiB records: eight others lose nothing, shutdown is bounded."""
        ctx = mptrace.get_context(start_method)
        started = ctx.Event()
        big = ctx.Process(target=log_forever, args=(MIB, started, "big"))
        big.start()
        assert started.wait(60)
        others = [
            ctx.Process(target=log_n, args=(2000, f"other-{i}")) for i in range(8)
        ]
        for p in others:
            p.start()
        os.kill(big.pid, signal.SIGKILL)
        big.join(60)
        for p in others:
            p.join(60)
        assert big.exitcode == -signal.SIGKILL
        assert [p.exitcode for p in others] == [0] * 8
        t0 = time.monotonic()
        session.shutdown()
        assert time.monotonic() - t0 < 10
        events = read_jsonl(jsonl)
        for i in range(8):
            assert len(logs_of(events, tag=f"other-{i}")) == 2000
        bigs = logs_of(events, tag="big")
        assert len(bigs) >= 3
        assert [e["i"] for e in bigs] == list(range(1, len(bigs) + 1))
        assert all(len(e["payload"]) == MIB for e in bigs)
        lost = [e for e in events if e.get("lost_pid") == big.pid]
        assert sum(e["lost"] for e in lost) <= 1
        if lost:
            assert lost[0]["event"].startswith(f"1 record lost from pid {big.pid}")


class _RawClient:
    """An authenticated stream that says it is process *pid*: the wire, no mptrace client."""

    def __init__(self, session: mptrace.Session, pid: int) -> None:
        config = session.child_config
        self.fd = _handshake.open_pipe(config.address, config.authkey, 10)
        os.set_blocking(self.fd, True)
        self.sendall(
            _events.encode(
                {
                    "kind": "hello",
                    "pid": pid,
                    "ppid": os.getpid(),
                    "process": "raw",
                    "seq": 0,
                }
            )
        )

    def sendall(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.fd, data) :]

    def close(self) -> None:
        os.close(self.fd)


def _log(seq: int, pid: int) -> dict:
    return {
        "kind": "log",
        "ts": time.time_ns(),
        "level": "info",
        "logger": "raw",
        "event": f"raw {seq}",
        "process": "raw",
        "pid": pid,
        "ppid": 1,
        "seq": seq,
    }


class TestLossReports:
    def test_a_record_cut_off_mid_write_is_reported(self, session, jsonl):
        """A stream that ends inside a frame: the listener says '1 record lost from pid P'."""
        sock = _RawClient(session, 424242)
        sock.sendall(_events.encode(_log(1, 424242)))
        frame = _events.encode(_log(2, 424242))
        sock.sendall(frame[: len(frame) // 2])
        sock.close()
        session.shutdown()
        events = read_jsonl(jsonl)
        assert logs_of(events, event="raw 1")
        assert not logs_of(events, event="raw 2")
        reports = [e for e in events if e.get("lost_pid") == 424242]
        assert [e["lost"] for e in reports] == [1]
        assert reports[0]["event"].startswith("1 record lost from pid 424242")

    def test_a_gap_in_sequence_numbers_is_reported(self, session, jsonl):
        """Records 1, 2 then 5 arrive: the listener reports 2 records lost from that pid."""
        sock = _RawClient(session, 434343)
        for seq in (1, 2, 5):
            sock.sendall(_events.encode(_log(seq, 434343)))
        sock.close()
        session.shutdown()
        events = read_jsonl(jsonl)
        assert len(logs_of(events, pid=434343)) == 3
        reports = [e for e in events if e.get("lost_pid") == 434343]
        assert [e["lost"] for e in reports] == [2]
        assert "2 records lost from pid 434343" in reports[0]["event"]

    def test_garbage_after_the_handshake_costs_only_that_stream(self, session, jsonl):
        """A frame that is not JSON is counted as lost; the stream and others go on."""
        sock = _RawClient(session, 454545)
        body = _events.PREFIX.pack(_events.KIND_CODES["log"], 0, 1) + b"{not json"
        sock.sendall(_events.HEADER.pack(len(body)) + body)
        sock.sendall(_events.encode(_log(2, 454545)))
        sock.close()
        import logging

        logging.getLogger("after").info("still here")
        session.shutdown()
        events = read_jsonl(jsonl)
        assert logs_of(events, event="raw 2")
        assert logs_of(events, event="still here")
        assert [e["lost"] for e in events if e.get("lost_pid") == 454545] == [1]
