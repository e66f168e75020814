"""The parent's exit monitor: one thread that waits on its children's sentinels.

While a child runs, the monitor samples its CPU, memory and threads with
psutil every ``interval`` seconds; when its sentinel fires, the exit is
claimed and handed to *on_exit* (``lifecycle.finish``). The exit code is read
through the child's own ``Popen`` object, with its ``poll`` serialised by a
lock, so the user's ``join()``, ``exitcode`` and ``is_alive()`` see exactly
what they would see without mptrace. This works for forkserver children too,
which are the fork server's children and so cannot be peeked at with
``waitid``. Exactly one of ``join()``, ``close()`` and the monitor records each
exit (``claim``).

The thread is not alive when the program forks (``_participant.forksafe``): a fork hook
stops it before the fork, and it starts again when the next child is
watched (right after ``start()`` returns). After a fork mptrace did not make
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
from collections.abc import Callable
from typing import Any

from mptrace._participant import forksafe as _forksafe

_log = logging.getLogger("mptrace.process")


class Watch:
    """What the parent knows of one running child."""

    __slots__ = (
        "claimed",
        "config",
        "cpu_system",
        "cpu_user",
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
        try:
            return self.popen.wait(5.0) if wait else self.popen.poll()  # type: ignore[no-any-return]
        except Exception:
            return self.popen.returncode  # type: ignore[no-any-return]


def serialise_poll(process: Any) -> None:
    """Make the child's ``Popen.poll`` safe to call from two threads at once."""
    popen = getattr(process, "_popen", None)
    if popen is None:
        return
    original = popen.poll
    lock = threading.Lock()

    def poll(flag: int = os.WNOHANG) -> int | None:
        with lock:
            return original(flag)  # type: ignore[no-any-return]

    popen.poll = poll


OnExit = Callable[[Watch, bool], None]


class Monitor:
    """One thread per process that starts children: sentinels and samples.

    *on_exit(watch, running_at_shutdown)* records an exit; it is called once
    per child, from the monitor's thread, or from ``stop``.
    """

    def __init__(self, interval: float, on_exit: OnExit) -> None:
        self.interval = interval
        self.on_exit = on_exit
        self._watches: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._pausing = False
        self._paused = False
        _forksafe.register(self)
        self._thread = self._start_thread()

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="mptrace-monitor", daemon=True)
        thread.start()
        return thread

    def pause(self) -> None:
        """Before a fork: end the thread (its OS thread too), keeping every watch."""
        thread = self._thread
        if self._stopping or self._paused or not thread.is_alive():
            return
        self._pausing = True
        try:
            os.write(self._wake_w, b"p")
        except OSError:
            return
        _forksafe.end_thread(thread)
        self._paused = True

    def resume(self) -> None:
        """After a fork, in the parent, once it has returned: the thread again."""
        if not self._paused or self._stopping:
            return
        self._pausing = self._paused = False
        self._thread = self._start_thread()

    def watch(self, watch: Watch) -> None:
        with self._lock:
            self._watches[watch.sentinel] = watch
        os.write(self._wake_w, b"w")
        _forksafe.resume_all()  # a fork has just returned: our threads again

    def claim(self, watch: Watch) -> bool:
        """True for the first caller only: that caller records the exit."""
        with self._lock:
            if watch.claimed:
                return False
            watch.claimed = True
            self._watches.pop(watch.sentinel, None)
        try:
            os.write(self._wake_w, b"c")  # stop waiting on a sentinel close() may shut
        except OSError:
            pass
        return True

    def _run(self) -> None:
        next_sample = time.monotonic() + self.interval
        while not self._stopping and not self._pausing:
            with self._lock:
                sentinels = list(self._watches)
            timeout = max(0.0, next_sample - time.monotonic())
            try:
                ready = multiprocessing.connection.wait(
                    [self._wake_r, *sentinels], timeout
                )
            except (OSError, ValueError):  # a sentinel closed under us: look again
                continue
            for fd in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    watch = self._watches.get(fd) if isinstance(fd, int) else None
                if watch is not None and self.claim(watch):
                    self._finish(watch, False)
            if time.monotonic() >= next_sample:
                with self._lock:
                    watches = list(self._watches.values())
                for watch in watches:
                    watch.sample()
                next_sample = time.monotonic() + self.interval

    def _finish(self, watch: Watch, running_at_shutdown: bool) -> None:
        try:
            self.on_exit(watch, running_at_shutdown)
        except Exception as exc:  # telemetry must not take the program down
            _log.warning("could not record the exit of pid %s: %r", watch.pid, exc)

    def stop(self) -> None:
        """Record every child that has exited; close the spans of the rest."""
        self._stopping = True
        _forksafe.unregister(self)
        os.write(self._wake_w, b"s")
        self._thread.join(5.0)
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
