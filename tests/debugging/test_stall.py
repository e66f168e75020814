"""A pool that stops moving: its stall is told once, with every process's stacks.

Two pool tasks take two ``multiprocessing.Lock``s in opposite order (a
barrier makes the order certain): a real deadlock. Within the stall time
(plus a sample of the monitor), the owner says so and the listener takes
the stacks of the owner and of each worker, at the line where it waits.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from multiprocessing.pool import ThreadPool

import pytest
from conftest import read_jsonl

from mptrace._instrument import stall
from mptrace._schema import stacks as _stacks
from mptrace._session import env as _env
from mptrace.exceptions import ConfigurationError

STALL = 1.0

POOL_DEADLOCK = textwrap.dedent(
    """
    import logging, multiprocessing, sys
    import mptrace

    def hold(a, b, barrier):
        global locks
        locks = (a, b, barrier)

    def task(i):
        a, b, barrier = locks
        first, second = (a, b) if i == 0 else (b, a)
        with first:
            barrier.wait()
            second.acquire()  # each task waits here

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        locks = (ctx.Lock(), ctx.Lock(), ctx.Barrier(2))
        with mptrace.init(exporters=[sys.argv[2]], stall_timeout=float(sys.argv[3])):
            pool = ctx.Pool(2, initializer=hold, initargs=locks)
            result = pool.map_async(task, [0, 1], chunksize=1)
            logging.getLogger("app").warning("dispatched")
            # The bound of the test: told and stacked within it, or failed.
            result.wait(float(sys.argv[3]) + 5)  # the owner waits here
            assert not result.ready()
            pool.terminate()
    """
)


EXECUTOR_WAITS = textwrap.dedent(
    """
    import concurrent.futures, logging, multiprocessing, sys
    import mptrace

    def hold(lock):
        global held
        held = lock

    def task():
        with held:  # the task waits here
            return 1

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        lock = ctx.Lock()
        with mptrace.init(exporters=[sys.argv[2]], stall_timeout=float(sys.argv[3])):
            with concurrent.futures.ProcessPoolExecutor(
                1, mp_context=ctx, initializer=hold, initargs=(lock,)
            ) as executor, lock:
                future = executor.submit(task)
                logging.getLogger("app").warning("dispatched")
                concurrent.futures.wait([future], float(sys.argv[3]) + 5)
                assert not future.done()
            assert future.result() == 1
    """
)


def line_of(text: str, marker: str) -> int:
    (number,) = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    return number


def run_program(tmp_path, name, text, start_method):
    """Run *text* as a program under a session; it and its JSON lines."""
    program = tmp_path / f"{name}.py"
    program.write_text(text)
    path = tmp_path / "run.jsonl"
    done = subprocess.run(
        [sys.executable, str(program), start_method, f"jsonl:{path}", str(STALL)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return program, read_jsonl(path)


def test_a_pool_deadlock_is_told_with_every_stack(start_method, tmp_path):
    program, events = run_program(
        tmp_path, "pool_deadlock", POOL_DEADLOCK, start_method
    )
    (dispatched,) = [e for e in events if e.get("event") == "dispatched"]
    (told,) = [e for e in events if e.get("logger") == "mptrace.pool"]
    assert "Pool made no progress" in told["event"]
    assert "2 tasks outstanding" in told["event"]
    stalled = [
        e for e in events
        if e.get("kind") == "stacks" and e.get("reason") == _stacks.STALLED
    ]  # fmt: skip
    by_process = {e["process"]: e for e in stalled}
    assert len(by_process) == len(stalled) == 3, stalled  # one round, once
    owner = by_process.pop("MainProcess")
    assert owner["pid"] == dispatched["pid"]
    # Within the stall time, a sample of the monitor (1 s) and a margin.
    for event in stalled:
        assert event["ts"] - dispatched["ts"] < (STALL + 1 + 2.5) * 1e9
    task_line = line_of(POOL_DEADLOCK, "each task waits here")
    for name, event in by_process.items():
        assert "PoolWorker" in name, name
        frames = [f for t in event["threads"] for f in t["frames"]]
        assert {"file": str(program), "line": task_line, "function": "task"} in frames
    owner_frames = [f for t in owner["threads"] for f in t["frames"]]
    owner_line = line_of(POOL_DEADLOCK, "the owner waits here")
    assert {"file": str(program), "line": owner_line, "function": "<module>"} in (
        owner_frames
    )


def test_an_executor_that_waits_is_told(start_method, tmp_path):
    program, events = run_program(
        tmp_path, "executor_waits", EXECUTOR_WAITS, start_method
    )
    (told,) = [e for e in events if e.get("logger") == "mptrace.pool"]
    assert "ProcessPoolExecutor made no progress" in told["event"]
    assert "1 task outstanding" in told["event"]
    stalled = [e for e in events if e.get("reason") == _stacks.STALLED]
    assert {e["process"] for e in stalled} >= {"MainProcess"}
    (worker,) = [e for e in stalled if e["process"] != "MainProcess"]
    frames = [f for t in worker["threads"] for f in t["frames"]]
    task_line = line_of(EXECUTOR_WAITS, "the task waits here")
    assert {"file": str(program), "line": task_line, "function": "task"} in frames


@pytest.fixture
def stacks_folder(tmp_path):
    os.mkdir(_stacks.folder(str(tmp_path)))
    yield str(tmp_path)
    stall._forget()


def requests(session_dir: str) -> list[str]:
    where = _stacks.folder(session_dir)
    found = []
    for name in sorted(os.listdir(where)):
        if name.startswith(_stacks.REQUEST):
            with open(os.path.join(where, name)) as f:
                found.append(f.read())
    return found


def test_told_once_a_stall_and_again_after_it_moved(stacks_folder, caplog):
    """A real (thread) pool with a task that waits: idle is not a stall; work
    that does not move for the stall time is told once; once it moved, a new
    stall is told again."""
    gate = [threading.Event() for _ in range(2)]
    with ThreadPool(1) as pool:
        stall.watch(pool)
        stall.check(5, stacks_folder, now=0)
        assert stall.outstanding(pool) is None  # nothing to do: never stalled
        first = pool.apply_async(gate[0].wait)
        with caplog.at_level(logging.WARNING, "mptrace.pool"):
            stall.check(5, stacks_folder, now=100)
            stall.check(5, stacks_folder, now=104)
            assert requests(stacks_folder) == []
            stall.check(5, stacks_folder, now=105)
            stall.check(5, stacks_folder, now=500)
            assert requests(stacks_folder) == [_stacks.STALLED]
            assert len(caplog.records) == 1
            assert "ThreadPool made no progress for 5 s with 1 task" in (
                caplog.records[0].getMessage()
            )
            gate[0].set()
            first.wait(10)
            second = pool.apply_async(gate[1].wait)
            stall.check(5, stacks_folder, now=600)  # it moved: a new stall
            stall.check(5, stacks_folder, now=606)
            assert requests(stacks_folder) == [_stacks.STALLED] * 2
            gate[1].set()
            second.wait(10)


def test_a_map_counts_its_chunks_left(stacks_folder):
    gate = threading.Event()
    with ThreadPool(1) as pool:
        result = pool.map_async(lambda _: gate.wait(), range(4), chunksize=1)
        count, looks = stall.outstanding(pool)
        assert count == 4
        gate.set()
        result.wait(10)
        assert stall.outstanding(pool) is None


def test_off_and_bad_values(monkeypatch):
    assert _env.stall_timeout(None) == 60.0
    assert _env.stall_timeout(0) == 0.0
    assert _env.stall_timeout(2.5) == 2.5
    monkeypatch.setenv("MPTRACE_STALL_TIMEOUT", "0")
    assert _env.stall_timeout(None) == 0.0
    monkeypatch.setenv("MPTRACE_STALL_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="MPTRACE_STALL_TIMEOUT='soon'"):
        _env.stall_timeout(None)
    for bad in (-1, True, "x", float("nan"), 10**6):
        with pytest.raises(ConfigurationError, match=r"from 0 \(never"):
            _env.stall_timeout(bad)
