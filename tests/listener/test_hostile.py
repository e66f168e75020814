"""The listener among hostile or careless peers, and out of descriptors.

Connections that never speak, floods of connect-and-close, a listener out of
file descriptors: it never spins, warns once per kind of trouble, tells a
writer the real reason, and lets real children in as soon as it can.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys

import psutil
import pytest
from conftest import logs_of, read_jsonl
from workers import log_n, log_while_the_listener_is_full, square

import mptrace
from mptrace._listener import transport as _transport
from mptrace._schema import handshake as _handshake

HOLDER = """
import json, os, socket, sys
from mptrace._schema import events as _events, handshake as _handshake

address, key, count, how = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
taken, refused = [], []
for i in range(count):
    if how == "silent":  # connect, and never say a word
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address)
        taken.append(s)
        continue
    try:
        fd = _handshake.open_pipe(address, key, 5)
    except _handshake.ListenerBusy as exc:
        refused.append(str(exc))
        continue
    hello = {"kind": "hello", "pid": 100000 + i, "ppid": os.getpid(), "process": "raw"}
    os.write(fd, _events.encode({**hello, "seq": 0}))
    log = {"kind": "log", "level": "info", "event": "raw", "i": i, "seq": 1}
    os.write(fd, _events.encode(log))
    taken.append(fd)
print(json.dumps({"taken": len(taken), "refused": refused}), flush=True)
sys.stdin.readline()  # hold them until told
"""


def _hold(session: mptrace.Session, count: int, how: str) -> subprocess.Popen[str]:
    """Another process opens *count* authenticated streams (or silent
    connections) and holds them until told; not this one, whose fork
    children would inherit them and hold them too."""
    config = session.child_config
    key = config.authkey.hex()
    # A peer from outside the run: not a program of the session (which would
    # join it, and whose start this process would record, connecting first).
    env = {k: v for k, v in os.environ.items() if k != "MPTRACE_JOIN"}
    mptrace.uninstrument()
    try:
        return subprocess.Popen(
            [sys.executable, "-c", HOLDER, config.address, key, str(count), how],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
    finally:
        mptrace.instrument()


def _own_warnings(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e.get("logger") == "mptrace"]


class TestOutOfDescriptors:
    def test_no_spin_the_real_reason_and_children_get_in_once_there_is_room(
        self, start_method, jsonl, tmp_path, capfd
    ):
        """With the listener at 32 descriptors, 30 streams: the ones it cannot
        take are told it is out of file descriptors (the session's own process
        says so on stderr); it warns at most twice; a child started then has
        its stream back once descriptors are free; every record of every
        stream it took is in the file."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"], block_timeout=1.0)
        resource.prlimit(session.listener_pid, resource.RLIMIT_NOFILE, (32, 32))
        holder = _hold(session, 30, "streams")
        try:
            opened = json.loads(holder.stdout.readline())
            assert opened["taken"] and opened["refused"], opened
            assert set(opened["refused"]) == {"the listener is out of file descriptors"}
            ctx = mptrace.get_context(start_method)
            tried, freed = ctx.Event(), ctx.Event()
            err = tmp_path / "child.err"
            child = ctx.Process(
                target=log_while_the_listener_is_full, args=(tried, freed, str(err))
            )
            child.start()
            assert tried.wait(60)
        finally:
            holder.communicate("close\n", timeout=60)
        freed.set()
        child.join(60)
        assert child.exitcode == 0
        session.shutdown()
        said = capfd.readouterr().err
        assert (
            f"{os.getpid()} writes its records to its own stderr" in said
            and "ListenerBusy('the listener is out of file descriptors')" in said
        ), said[-2000:]
        events = read_jsonl(jsonl)
        assert len(logs_of(events, event="raw")) == opened["taken"]
        assert logs_of(events, event="back", pid=child.pid)
        assert len(_own_warnings(events)) <= 2, _own_warnings(events)


class TestFloods:
    def test_silent_connections_hold_no_thread_each_and_children_still_get_in(
        self, start_method, jsonl
    ):
        """200 connections that never speak: the listener keeps its bounded
        handshake pool (no thread per connection), and a child started during
        the flood has all its records in the file once the flood ends."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        listener = psutil.Process(session.listener_pid)
        threads_before = listener.num_threads()
        holder = _hold(session, 200, "silent")
        try:
            assert json.loads(holder.stdout.readline())["taken"] == 200
            assert listener.num_threads() <= max(
                threads_before, _transport.HANDSHAKERS + 1
            )
            child = mptrace.get_context(start_method).Process(
                target=log_n, args=(100, "during-flood")
            )
            child.start()
        finally:
            holder.communicate("close\n", timeout=60)
        child.join(60)
        session.shutdown()
        assert child.exitcode == 0
        events = read_jsonl(jsonl)
        assert len(logs_of(events, tag="during-flood", pid=child.pid)) == 100
        assert len(_own_warnings(events)) <= 2, _own_warnings(events)

    def test_connect_and_close_floods_give_one_warning(self, jsonl, capfd):
        """300 connections closed at once: one warning in the log, the count
        at shutdown."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        for _ in range(300):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(session.address)
        session.shutdown()
        warnings = _own_warnings(read_jsonl(jsonl))
        assert len(warnings) == 1, warnings
        assert "300 connections refused" in capfd.readouterr().err

    def test_a_connection_closed_mid_handshake_is_said_as_such(self, jsonl):
        """A peer that closes before its handshake (as a child terminated while
        connecting does) is not reported as a failed authentication."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(session.address)
        session.shutdown()
        (warning,) = _own_warnings(read_jsonl(jsonl))
        assert "was closed before its handshake finished" in warning
        assert "authentication" not in warning

    @pytest.mark.parametrize("slow", [20])
    def test_slow_clients_do_not_hold_up_shutdown(self, jsonl, slow):
        """Clients that connect and never finish their handshake hold up
        shutdown by one handshake deadline and the drain's grace at most (it
        took 10.5 s with 20 of them)."""
        import time

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        clients = []
        for _ in range(slow):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(session.address)
            clients.append(s)
        t0 = time.monotonic()
        session.shutdown()
        elapsed = time.monotonic() - t0
        for s in clients:
            s.close()
        bound = _handshake.HANDSHAKE_TIMEOUT + _transport.HANDSHAKE_GRACE + 1.0
        assert elapsed < bound, elapsed
        assert session._proc.returncode == 0, "the listener had to be killed"


class TestChildrenThatEnd:
    def test_pool_workers_terminated_while_connecting_are_not_refused(
        self, start_method, jsonl, capfd
    ):
        """50 Pools run and closed: a worker the pool terminates during its
        handshake is a child that ended, not a refused connection (about one
        run in four used to end with "1 connections refused")."""
        ctx = multiprocessing.get_context(start_method)
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            for _ in range(50):
                with ctx.Pool(2) as pool:
                    assert pool.map(square, range(4)) == [0, 1, 4, 9]
        assert "refused" not in capfd.readouterr().err
        warnings = _own_warnings(read_jsonl(jsonl))
        assert not [w for w in warnings if "refused" in w], warnings
