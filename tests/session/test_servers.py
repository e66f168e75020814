"""The end of a session while servers still run: a manager's process, a pool
or a reusable executor left open, a daemon.

They end when their owner stops them, which may be long after the session:
leaving ``with mptrace.init()`` does not wait for them, says nothing about
them, and what they log later still reaches the file (the listener stays on
until the last of their streams closes).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from multiprocessing.managers import SyncManager

import pytest
from conftest import logs_of, read_jsonl, wait_gone

import mptrace

log = logging.getLogger("servers")


def say(tag: str) -> int:
    """Runs in the manager's server process."""
    log.warning("from the server", extra={"tag": tag})
    return os.getpid()


class Talker(SyncManager):
    """A ``multiprocessing.Manager`` that can be asked to log."""


Talker.register("say", callable=say)


def log_square(x: int) -> int:
    log.warning("task", extra={"x": x})
    return x * x


def block_then_log(go, tag: str) -> None:
    go.wait(60)
    log.warning("late", extra={"tag": tag})


class TestServersOutliveTheSession:
    def test_a_manager_left_alive_does_not_hold_up_the_end(
        self, start_method, jsonl, capfd
    ):
        """The block is left while the manager still runs (it used to wait
        10 s and warn); its records so far are in the file then; the listener
        stays on, so what it logs afterwards arrives once it ends."""
        ctx = multiprocessing.get_context(start_method)
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as session:
            manager = Talker(ctx=ctx)
            manager.start()
            manager.say("before")
        server = manager._process.pid
        try:
            assert manager._process.is_alive(), "shutdown waited for the manager"
            assert logs_of(read_jsonl(jsonl), tag="before")
            listener = session.listener_pid
            assert not wait_gone(listener, 0), "the listener left the manager behind"
            manager.say("after")
        finally:
            manager.shutdown()
        assert wait_gone(listener, 30), "the listener outlived the manager"
        (after,) = logs_of(read_jsonl(jsonl), tag="after")
        assert after["pid"] == server
        assert "mptrace" not in capfd.readouterr().err

    def test_a_pool_left_open_and_a_daemon_do_not_hold_up_the_end(
        self, start_method, jsonl, capfd
    ):
        """A Pool never closed and a daemon child still running: the block is
        left at once and quietly; the daemon's later record arrives."""
        ctx = multiprocessing.get_context(start_method)
        go = ctx.Event()
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as session:
            pool = ctx.Pool(2)
            assert pool.map(log_square, range(4)) == [0, 1, 4, 9]
            daemon = ctx.Process(
                target=block_then_log, args=(go, "daemon"), daemon=True
            )
            daemon.start()
        listener = session.listener_pid
        try:
            assert daemon.is_alive(), "shutdown waited for the daemon"
            go.set()
            daemon.join(60)
        finally:
            pool.terminate()
            pool.join()
        assert wait_gone(listener, 30), "the listener outlived the processes"
        events = read_jsonl(jsonl)
        assert len(logs_of(events, event="task")) == 4
        assert logs_of(events, tag="daemon")
        assert "mptrace" not in capfd.readouterr().err


def test_joblib_reusable_workers_do_not_hold_up_the_end(jsonl, capfd):
    """joblib.Parallel leaves loky's reusable workers idle after the block
    (it used to wait 10 s and warn about them); the block is left while they
    live, and the listener ends once they are shut down."""
    joblib = pytest.importorskip("joblib")
    from joblib.externals.loky import reusable_executor

    with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as session:
        squares = joblib.Parallel(n_jobs=2)(
            joblib.delayed(log_square)(x) for x in range(4)
        )
        assert squares == [0, 1, 4, 9]
    executor = reusable_executor._executor
    assert executor is not None
    workers = list(executor._processes.values())
    try:
        assert workers and any(p.is_alive() for p in workers), "they were waited for"
        assert "mptrace" not in capfd.readouterr().err
    finally:
        executor.shutdown(wait=True)
    assert wait_gone(session.listener_pid, 30), "the listener outlived the workers"
    assert len(logs_of(read_jsonl(jsonl), event="task")) == 4
