"""mptrace is a guest of the program's processes: it changes nothing they see.

No lock of its held across a blocking wait, no finished child kept alive, no
thread the program would count, and the run's trace in every thread.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import gc
import multiprocessing
import multiprocessing.connection
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from conftest import read_jsonl
from guest_workers import (
    asyncio_process,
    keyword_self,
    one_process_and_pool,
    say,
    start_from_thread,
    threads_here,
    wait_for,
)

import mptrace
from mptrace._participant import participant as _participant


def _blocked_in_wait(thread: threading.Thread, timeout: float = 30.0) -> bool:
    """Poll until *thread* is inside ``Popen.wait`` (a join), with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident or 0)
        while frame is not None:
            if frame.f_code.co_name == "wait" and "popen_" in frame.f_code.co_filename:
                return True
            frame = frame.f_back
        time.sleep(0.001)  # polling this process's own thread, not another process
    return False


class TestNoLockAcrossAWait:
    def test_start_goes_on_while_another_thread_joins(self, start_method, session):
        """A start() (and join) in one thread completes while another thread is
        blocked in join() of a child that runs on."""
        ctx = multiprocessing.get_context(start_method)
        release = ctx.Event()
        long = ctx.Process(target=wait_for, args=(release,))
        long.start()
        joiner = threading.Thread(target=long.join)
        joiner.start()
        try:
            assert _blocked_in_wait(joiner)
            theirs, ours = ctx.Pipe(duplex=False)
            done = threading.Event()

            def start_another() -> None:
                child = ctx.Process(target=say, args=(ours, "here"))
                child.start()
                child.join(60)
                done.set()

            starter = threading.Thread(target=start_another)
            starter.start()
            assert done.wait(60), "start() waited for another thread's join()"
            assert theirs.recv() == "here"
            assert joiner.is_alive() and long.is_alive()
        finally:
            release.set()
            joiner.join(60)
        assert long.exitcode == 0


class TestNothingKeptAlive:
    def test_a_finished_child_is_collected(self, start_method, session):
        """Once joined, a child the monitor saw end is freed with its last
        reference, while the monitor goes on watching another."""
        ctx = multiprocessing.get_context(start_method)
        release = ctx.Event()
        other = ctx.Process(target=wait_for, args=(release,))
        other.start()
        try:
            p = ctx.Process(target=keyword_self, kwargs={"self": 1})
            p.start()
            multiprocessing.connection.wait([p.sentinel], 60)
            p.join(60)
            ref = weakref.ref(p)
            del p
            # The monitor may still be recording the exit: poll, with a deadline.
            deadline = time.monotonic() + 30
            while gc.collect() >= 0 and ref() is not None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.001)
            assert ref() is None
        finally:
            release.set()
            other.join(60)

    def test_no_thread_left_when_no_child_runs(self, start_method, session):
        """The monitor's thread ends with the last child it watched."""
        ctx = multiprocessing.get_context(start_method)
        before = _thread._count()
        p = ctx.Process(target=keyword_self, kwargs={"self": 1})
        p.start()
        p.join(60)
        part = _participant.current()
        assert part is not None and part.monitor is not None
        deadline = time.monotonic() + 30
        while part.monitor.running and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)
        assert not part.monitor.running  # type: ignore[attr-defined]
        assert _thread._count() <= before


class TestNoThreadInTheProgramsSight:
    def test_a_child_starts_no_thread_of_the_programs(
        self, start_method, session, monkeypatch
    ):
        """The program's threading starts no thread for mptrace in the parent,
        and a child that starts no process has the main thread alone."""
        name = (
            "_start_joinable_thread"
            if hasattr(threading, "_start_joinable_thread")
            else "_start_new_thread"
        )
        started: list[Any] = []
        original = getattr(threading, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            started.append(args)
            return original(*args, **kwargs)

        ctx = multiprocessing.get_context(start_method)
        theirs, ours = ctx.Pipe(duplex=False)
        monkeypatch.setattr(threading, name, counting)
        p = ctx.Process(target=threads_here, args=(ours,))
        p.start()
        seen = theirs.recv()
        p.join(60)
        monkeypatch.undo()
        assert seen == ["MainThread"]
        # The stderr relay ("mptrace-stderr") is the session's, not the children's.
        names = [getattr(a[0], "__self__", None) for a in started]
        assert [
            t.name for t in names if t is not None and t.name != "mptrace-stderr"
        ] == []
        assert "mptrace-monitor" not in [t.name for t in threading.enumerate()]


class TestKeywordSelf:
    def test_a_task_may_take_a_keyword_named_self(self, start_method, session):
        """submit(fn, self=1) and apply_async(fn, kwds={"self": 1}) reach fn."""
        ctx = multiprocessing.get_context(start_method)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            assert ex.submit(keyword_self, self=1).result(60) == 1
        with ctx.Pool(1) as pool:
            assert pool.apply_async(keyword_self, kwds={"self": 2}).get(60) == 2


class TestRunTraceInEveryThread:
    @pytest.mark.parametrize("where", ["thread", "asyncio"])
    def test_processes_and_tasks_are_in_the_runs_trace(
        self, start_method, jsonl, where
    ):
        """Started from a thread of the program's own, or from asyncio, a
        process and a pool's task are children of the run's span."""
        work = one_process_and_pool if where == "thread" else asyncio_process
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            start_from_thread(multiprocessing.get_context(start_method), work)
        spans = [e for e in read_jsonl(jsonl) if e.get("kind") == "span"]
        (run,) = [s for s in spans if s["attributes"].get("mptrace.span") == "run"]
        names = (
            ["process from-thread", "task guest_workers.square"]
            if where == "thread"
            else ["process from-asyncio", "process from-task"]
        )
        for name in names:
            found = [s for s in spans if s["name"] == name]
            assert found, (name, sorted(s["name"] for s in spans))
            for s in found:
                assert s["trace_id"] == run["trace_id"], name
                assert s.get("parent_span_id") == run["span_id"], name
        assert {s["trace_id"] for s in spans} == {run["trace_id"]}


class TestADropInsChildInstruments:
    def test_a_process_its_child_starts_with_the_stdlib_joins(
        self, start_method, jsonl
    ):
        """A child of mptrace's drop-in context instruments the stdlib as the
        session's owner did, so a process it starts with the stdlib's own
        context joins too (under spawn and forkserver it did not)."""
        from guest_workers import stdlib_grandchild

        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            ctx = mptrace.get_context(start_method)
            p = ctx.Process(target=stdlib_grandchild, args=(start_method,))
            p.start()
            p.join(60)
            assert p.exitcode == 0
        events = read_jsonl(jsonl)
        said = [e["event"] for e in events if e.get("logger") == "guest"]
        assert sorted(said) == ["the child", "the grandchild"], said
        spans = [e["name"] for e in events if e.get("kind") == "span"]
        assert "process grandchild" in spans, spans
