"""The parent's exit monitor: one thread that waits on its children's sentinels.

While a child runs, the monitor samples its CPU, memory and threads with
psutil every ``interval`` seconds; when its sentinel fires, the exit is
claimed and handed to *on_exit* (``lifecycle.finish``). The exit code is read
through the child's own ``Popen`` object, its reap serialised by a lock that
is never held across a blocking wait (``serialise_poll``), so the user's
``join()``, ``exitcode`` and ``is_alive()`` see exactly what they would see
without mptrace, and one thread's ``join()`` never holds up another's
``start()``. This works for forkserver children too,
which are the fork server's children and so cannot be peeked at with
``waitid``. Exactly one of ``join()``, ``close()`` and the monitor records each
exit (``claim``).

The thread runs only while a child is watched, and keeps no finished
child's objects alive. It is not alive when the program forks
(``_participant.forksafe``): a fork hook stops it before the fork, and it
starts again when the next child is watched (right after ``start()``
returns). After a fork mptrace did not make
(``os.fork``, a process it does not watch), the exits of children already
running are recorded at their ``join()``, at the next child's start, or at
shutdown.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from mptrace._participant import forksafe as _forksafe

_log = logging.getLogger("mptrace.process")

#: Descriptors the monitor's thread also waits on while it runs, each with
#: what to call (from that thread) once it is ready: the owner's listener's
#: pidfd (``_session.restart``). They need no thread of their own.
_also: dict[int, Callable[[], object]] = {}


def watch_also(fd: int, ready: Callable[[], object]) -> None:
    """While the monitor runs, call *ready* once *fd* is readable (once)."""
    _also[fd] = ready


def unwatch_also(fd: int) -> None:
    _also.pop(fd, None)


def _forget_also() -> None:  # a forked child: none of them are its own
    _also.clear()


os.register_at_fork(after_in_child=_forget_also)


class Watch:
    """What the parent knows of one running child."""

    __slots__ = (
        "claimed",
        "config",
        "cpu_system",
        "cpu_user",
        "done",
        "max_threads",
        "peak_rss",
        "pid",
        "popen",
        "process",
        "ps",
        "sentinel",
        "span",
        "terminated",
    )  # fmt: skip

    def __init__(self, process: Any, span: Any, config: Any) -> None:
        self.process = process
        self.span = span
        self.pid: int = process.pid
        self.config = config
        self.terminated: str | None = None
        self.sentinel: int = process.sentinel
        self.popen = process._popen  # outlives a close() of the process object
        self.claimed = False
        # Set once the exit is recorded: a join() that lost the claim waits for it.
        self.done = threading.Event()
        self.peak_rss = 0
        self.max_threads = 0
        self.cpu_user: float | None = None
        self.cpu_system: float | None = None
        try:
            import psutil

            self.ps: Any = psutil.Process(self.pid)
        except Exception:
            self.ps = None

    def sample(self) -> None:
        ps = self.ps
        if ps is None:
            return
        try:
            with ps.oneshot():
                cpu = ps.cpu_times()
                self.cpu_user, self.cpu_system = cpu.user, cpu.system
                self.peak_rss = max(self.peak_rss, ps.memory_info().rss)
                self.max_threads = max(self.max_threads, ps.num_threads())
        except Exception:  # gone, a zombie, or not ours to read: keep the last sample
            pass

    def exit_code(self, wait: bool) -> int | None:
        """The child's exit code (waiting up to 5 s if *wait*), or None."""
        popen = self.popen
        if popen is None:  # recorded and let go already
            return None
        try:
            return popen.wait(5.0) if wait else popen.poll()  # type: ignore[no-any-return]
        except Exception:
            return popen.returncode  # type: ignore[no-any-return]

    def release(self) -> None:
        """The exit is recorded: let go of the child's objects.

        The process object holds this watch (its ``ProcessState``), so a
        watch that kept the process would make a cycle, and a joined
        ``Process`` and its ``Popen`` would outlive their last reference
        until a garbage collection, with the Popen's finalizer still
        registered (CPython's own tests look for both).
        """
        self.process = self.popen = self.ps = None
        self.done.set()


def serialise_poll(process: Any) -> None:
    """Make the child's ``Popen.poll`` safe to call from two threads at once.

    Two reaps at once lose the exit code (the second ``waitpid`` fails, a
    fork server's code is read once), so the reap itself is serialised. A
    blocking poll (``join()``) first waits for the child to have exited with
    no lock held, then reaps without blocking: a ``start()``, ``is_alive()``
    or ``terminate()`` in another thread never waits for someone's ``join()``.
    """
    popen = getattr(process, "_popen", None)
    if popen is None or "poll" in popen.__dict__:
        return
    popen.poll = _SerialPoll(popen)


class _SerialPoll:
    __slots__ = ("lock", "original", "peek", "popen")

    def __init__(self, popen: Any) -> None:
        self.popen = weakref.ref(popen)  # no cycle: the Popen goes with its Process
        self.original = type(popen).poll
        self.lock = threading.Lock()
        self.peek = _peek_pid if _can_peek(popen) else _wait_sentinel

    def __call__(self, flag: int = os.WNOHANG) -> int | None:
        popen = self.popen()
        if popen is None:
            return None
        if flag != os.WNOHANG and popen.returncode is None:
            if self.peek(popen):  # exited: the reap below does not block
                flag = os.WNOHANG
        with self.lock:
            return self.original(popen, flag)  # type: ignore[no-any-return]


def _can_peek(popen: Any) -> bool:
    # A fork server's child is not ours to wait for: its code comes on the sentinel.
    return hasattr(os, "waitid") and getattr(popen, "method", None) in ("fork", "spawn")


def _peek_pid(popen: Any) -> bool:
    """Block until our child *popen* has exited, leaving it to be reaped."""
    try:
        os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:  # reaped already, or not ours: poll says which
        pass
    return True


def _wait_sentinel(popen: Any) -> bool:
    """Block until *popen*'s sentinel fires; False where it is not the exit.

    A forked child's sentinel can be held open by its own forked children,
    so without ``waitid`` (macOS) its reap still blocks, for the moment
    between its end and its exit status.
    """
    try:
        multiprocessing.connection.wait([popen.sentinel])
    except (OSError, ValueError):
        return False
    return getattr(popen, "method", None) == "forkserver"


OnExit = Callable[[Watch, bool], None]


class Monitor:
    """One thread per process that starts children: sentinels and samples.

    *on_exit(watch, running_at_shutdown)* records an exit; it is called once
    per child, from the monitor's thread, or from ``stop``. *every()* runs at
    each sample (``stall``: pools that stopped moving). The thread runs
    only while there is a child to watch, and is out of the program's sight
    (``forksafe.GuestThread``): a program or a test suite that counts its
    threads counts its own.
    """

    def __init__(
        self,
        interval: float,
        on_exit: OnExit,
        every: Callable[[], object] | None = None,
    ) -> None:
        self.interval = interval
        self.on_exit = on_exit
        self.every = every  # called at each sample, after the children's
        self._watches: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        # Wake-ups pile up while no thread runs: a full pipe is awake enough.
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._pausing = False
        self._paused = False
        self._thread: _forksafe.GuestThread | None = None
        # The last thread started: one that ended by itself (nothing left to
        # watch) may still be leaving the OS when the program forks next.
        self._last: _forksafe.GuestThread | None = None
        _forksafe.register(self)

    @property
    def running(self) -> bool:
        """The thread is alive (it ends when no child is left to watch)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _start_thread(self) -> None:
        """With ``_lock`` held: a thread, unless one runs or may not now."""
        if self._thread is None and not (self._stopping or self._paused):
            self._pausing = False
            self._thread = self._last = _forksafe.GuestThread(self._run)

    def pause(self) -> None:
        """Before a fork: end the thread (its OS thread too), keeping every watch."""
        with self._lock:
            thread, self._thread = self._thread, None
            last = self._last
            if self._stopping or last is None:
                return
            if thread is not None:
                self._pausing = self._paused = True
        if thread is not None:
            self._wake(b"p")
        _forksafe.end_thread(last)
        with self._lock:  # gone: its thread id may be the program's next
            if self._last is last:
                self._last = None

    def resume(self) -> None:
        """After a fork, in the parent, once it has returned: the thread again."""
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            if self._watches:
                self._start_thread()

    def watch(self, watch: Watch) -> None:
        _forksafe.resume_all()  # a fork has just returned: our threads again
        with self._lock:
            self._watches[watch.sentinel] = watch
            self._start_thread()
        self._wake(b"w")

    def claim(self, watch: Watch) -> bool:
        """True for the first caller only: that caller records the exit."""
        with self._lock:
            if watch.claimed:
                return False
            watch.claimed = True
            self._watches.pop(watch.sentinel, None)
        self._wake(b"c")  # stop waiting on a sentinel close() may shut
        return True

    def _wake(self, why: bytes) -> None:
        try:
            os.write(self._wake_w, why)
        except OSError:  # full (the thread will look anyway) or closed
            pass

    def _run(self) -> None:
        next_sample = time.monotonic() + self.interval
        while self._step(next_sample):
            if time.monotonic() >= next_sample:
                self._sample()
                next_sample = time.monotonic() + self.interval

    def _step(self, next_sample: float) -> bool:
        """Wait for an exit or the next sample; False when the thread should end.

        Its own frame, so that nothing of a finished child (its ``Process``,
        its ``Popen``) stays alive in a local while the thread waits again.
        """
        me = threading.get_ident()
        with self._lock:
            thread = self._thread
            if self._stopping or self._pausing or thread is None or thread.ident != me:
                return False
            if not self._watches:
                self._thread = None  # nothing to watch: the next watch() starts one
                return False
            sentinels = list(self._watches)
        also = dict(_also)
        timeout = max(0.0, next_sample - time.monotonic())
        try:
            ready = multiprocessing.connection.wait(
                [self._wake_r, *sentinels, *also], timeout
            )
        except (OSError, ValueError):  # a sentinel closed under us: look again
            return True
        for fd in ready:
            if fd == self._wake_r:
                os.read(self._wake_r, 65536)
            elif fd in also:
                if _also.pop(fd, None) is not None:
                    try:
                        also[fd]()
                    except Exception as exc:  # never the monitor's end
                        _log.debug("mptrace: %r", exc)
            else:
                self._exited(fd)
        return True

    def _exited(self, fd: Any) -> None:
        with self._lock:
            watch = self._watches.get(fd) if isinstance(fd, int) else None
        if watch is not None and self.claim(watch):
            self._finish(watch, False)

    def _sample(self) -> None:
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.sample()
        if self.every is not None:
            try:
                self.every()
            except Exception as exc:  # never the monitor's end
                _log.debug("mptrace: %r", exc)

    def _finish(self, watch: Watch, running_at_shutdown: bool) -> None:
        try:
            self.on_exit(watch, running_at_shutdown)
        except Exception as exc:  # telemetry must not take the program down
            _log.warning("could not record the exit of pid %s: %r", watch.pid, exc)

    def stop(self) -> None:
        """Record every child that has exited; close the spans of the rest."""
        with self._lock:
            self._stopping = True
            thread, self._thread = self._thread, None
        _forksafe.unregister(self)
        self._wake(b"s")
        if thread is not None:
            _forksafe.end_thread(thread)
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            if self.claim(watch):
                exited = watch.exit_code(wait=False) is not None
                self._finish(watch, not exited)
        self.forget()

    def forget(self) -> None:
        """Close the wake-up pipe (after a fork, the thread is not ours)."""
        self._stopping = True
        _forksafe.unregister(self)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
