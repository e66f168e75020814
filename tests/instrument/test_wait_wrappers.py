"""Lock waits, in one process: the primitives behave as the stdlib's under
``instrument()``, and a long wait is recorded once, with its kind and place.

Threads contend here (a multiprocessing lock blocks a thread as it blocks a
process); ``tests/debugging/test_waits.py`` has processes under every start
method.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from collections.abc import Iterator

import pytest

import mptrace
from mptrace._instrument import stdlib, waits
from mptrace.exceptions import ConfigurationError

HERE = __file__


@pytest.fixture
def instrumented() -> Iterator[None]:
    """The stdlib instrumented, no session; put back after the test."""
    was = stdlib.instrumented()
    stdlib.instrument()
    yield
    if not was:
        stdlib.uninstrument()


def _line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def _holding(lock, seconds: float) -> threading.Thread:
    """A thread that holds *lock* for *seconds*; it holds it on return."""
    held = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(5)
    return thread


class TestBehaviourKept:
    def test_lock_is_marked_and_answers_as_the_stdlib(self, instrumented):
        """Its place is noted; a bare acquire() stays the C method."""
        lock = multiprocessing.Lock()
        assert getattr(lock, waits.WHERE).kind == "Lock"
        assert type(lock.acquire).__name__ == "builtin_function_or_method"
        assert lock.acquire() is True
        assert lock.acquire(False) is False
        assert lock.acquire(block=False) is False
        assert lock.acquire(timeout=0.01) is False
        assert lock.acquire(True, 0.01) is False
        lock.release()
        assert lock.acquire(block=False) is True
        lock.release()
        assert lock.acquire(1, 0.5) is True
        lock.release()
        with pytest.raises(ValueError):
            lock.release()

    def test_rlock_is_reentrant_and_owned(self, instrumented):
        rlock = multiprocessing.RLock()
        for _ in range(3):
            assert rlock.acquire() is True
        with rlock:
            assert rlock._semlock._count() == 4
        other: list[bool] = []
        thread = threading.Thread(target=lambda: other.append(rlock.acquire(False)))
        thread.start()
        thread.join()
        assert other == [False]
        for _ in range(3):
            rlock.release()
        with pytest.raises(AssertionError):
            rlock.release()

    def test_semaphores(self, instrumented):
        sem = multiprocessing.Semaphore(2)
        assert sem.acquire() and sem.acquire(timeout=0.01)
        assert sem.acquire(timeout=0.01) is False
        sem.release()
        sem.release()
        bounded = multiprocessing.BoundedSemaphore(1)
        with bounded:
            assert bounded.acquire(False) is False
        with pytest.raises(ValueError):
            bounded.release()

    def test_condition_wait_notify_and_wait_for(self, instrumented):
        cond = multiprocessing.Condition()
        box: list[int] = []

        def produce() -> None:
            time.sleep(0.05)
            with cond:
                box.append(1)
                cond.notify()

        with cond:
            assert cond.wait(0.01) is False
            thread = threading.Thread(target=produce)
            thread.start()
            assert cond.wait_for(lambda: box, timeout=5) == [1]
            assert cond.wait_for(lambda: len(box) > 1, timeout=0.01) is False
            assert cond._lock._semlock._is_mine()  # wait() took it back
        thread.join()
        with pytest.raises(AssertionError):
            cond.wait(0.01)  # not holding it

    def test_event(self, instrumented):
        event = multiprocessing.Event()
        assert event.wait(0.01) is False
        threading.Timer(0.05, event.set).start()
        assert event.wait(5) is True
        assert event.is_set()

    def test_barrier(self, instrumented):
        barrier = multiprocessing.Barrier(2)
        got: list[int] = []
        thread = threading.Thread(target=lambda: got.append(barrier.wait(5)))
        thread.start()
        got.append(barrier.wait(5))
        thread.join()
        assert sorted(got) == [0, 1]
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(0.02)
        assert barrier.broken

    def test_where_travels_with_the_pickled_state(self, instrumented):
        lock = multiprocessing.Lock()
        where = getattr(lock, waits.WHERE)
        state = waits.with_where((1, 2, 3, None), where.kind, where.place)
        again = pickle.loads(pickle.dumps(state))
        assert tuple(again) == (1, 2, 3, None)
        assert (again.where.kind, again.where.place) == (where.kind, where.place)

    def test_place_and_kind_are_the_programs(self, instrumented):
        line = _line() + 1
        event = multiprocessing.Event()
        where = waits._where_of(event._flag)
        assert (where.kind, where.place) == ("Event", f"{HERE}:{line}")
        assert waits._where_of(event._cond._lock).kind == "Event"
        assert getattr(multiprocessing.Barrier(2)._cond._wait_semaphore,
                       waits.WHERE).kind == "Barrier"  # fmt: skip

    def test_multiprocessings_own_locks_are_left_alone(self, instrumented):
        queue = multiprocessing.SimpleQueue()
        assert getattr(queue._rlock, waits.WHERE, None) is None
        assert type(queue._rlock.acquire).__name__ == "builtin_function_or_method"

    def test_uninstrument_puts_back_the_inherited_barrier_wait(self, instrumented):
        import multiprocessing.synchronize as sync

        assert "wait" in sync.Barrier.__dict__
        stdlib.uninstrument()
        assert "wait" not in sync.Barrier.__dict__
        assert "__enter__" in sync.SemLock.__dict__
        stdlib.instrument()


def _waits(events: list[dict]) -> list[dict]:
    return [
        item["attributes"]
        for e in events if e.get("kind") == "span"
        for item in e.get("events") or [] if item["name"] == waits.EVENT
    ]  # fmt: skip


class TestRecorded:
    def test_a_long_wait_once_and_an_uncontended_one_never(self):
        with mptrace.init(exporters=["memory"]) as session:
            line = _line() + 1
            lock = multiprocessing.Lock()
            for _ in range(100):
                with lock:
                    pass
            thread = _holding(lock, 0.15)
            assert lock.acquire(timeout=0.01) is False  # bare: never timed
            with lock:  # waits for the thread: timed
                pass
            thread.join()
            cond = multiprocessing.Condition()
            with cond:
                assert cond.wait(0.05) is False
            barrier = multiprocessing.Barrier(2)
            thread = threading.Timer(0.05, barrier.wait)
            thread.start()
            barrier.wait(5)
            thread.join()
            with pytest.raises(threading.BrokenBarrierError):
                barrier.wait(0.05)
        found = _waits(session.events())
        # The Barrier's two parties: the one that waits for the other is
        # recorded; the other's arrival can pass 10 ms too on a loaded
        # machine (it takes the condition's lock the first one holds).
        arrivals = [w for w in found if w[waits.KIND] == "Barrier"
                    and w[waits.OUTCOME] == "acquired"]  # fmt: skip
        assert 1 <= len(arrivals) <= 2, found
        assert max(w[waits.DURATION] for w in arrivals) >= 0.04
        found = [w for w in found if w not in arrivals[1:]]
        assert len(found) == 4, found
        first, second, passed, broken = found
        assert first[waits.KIND] == "Lock"
        assert first[waits.PLACE] == f"{HERE}:{line}"
        assert first[waits.OUTCOME] == "acquired"
        assert first[waits.DURATION] >= 0.1
        # Condition.wait is one wait, not its inner semaphore's and lock's
        assert (second[waits.KIND], second[waits.OUTCOME]) == ("Condition", "timed out")
        # a Barrier's index 0 is no timeout; a broken one says so
        assert (passed[waits.KIND], passed[waits.OUTCOME]) == ("Barrier", "acquired")
        assert broken[waits.OUTCOME] == "broken"

    def test_the_threshold_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("MPTRACE_WAIT_THRESHOLD", "0")
        with mptrace.init(exporters=["memory"]) as session:
            assert session.child_config.wait_threshold == 0
            lock = multiprocessing.Lock()
            thread = _holding(lock, 0.05)
            assert lock.acquire(timeout=0.01) is False
            thread.join()
        assert _waits(session.events()) == []
        monkeypatch.setenv("MPTRACE_WAIT_THRESHOLD", "0.5")
        with mptrace.init(exporters=["memory"]) as session:
            assert session.child_config.wait_threshold == 0.5

    @pytest.mark.parametrize("bad", ["soon", "-1", "nan", "inf"])
    def test_a_bad_threshold_names_the_variable(self, monkeypatch, bad):
        monkeypatch.setenv("MPTRACE_WAIT_THRESHOLD", bad)
        with pytest.raises(
            ConfigurationError, match=r"MPTRACE_WAIT_THRESHOLD.*seconds"
        ):
            mptrace.init(exporters=["memory"])
