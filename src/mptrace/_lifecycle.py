"""The life of every child: its process span, its transitions, its exit.

Parent side::

    Process.__init__ ── created          (span event, lifecycle record)
    Process.start()  ── span "process <name>" starts; started (pid known)
    terminate()/kill() ── terminated
    monitor thread: waits on every child's sentinel, samples psutil while it
    runs; at exit ── exited (code or signal, CPU, peak RSS), span ends

Child side (in ``_bootstrap``, before and after ``run()``)::

    running ── the parent's span becomes this process's current parent
    finished ── returned or raised, the child's own getrusage

The monitor learns the exit code through the child's own ``Popen`` object,
with its ``poll`` serialised by a lock, so the user's ``join()``,
``exitcode`` and ``is_alive()`` see exactly what they would see without
mptrace. This works for forkserver children too, which are the fork
server's children and so cannot be peeked at with ``waitid``.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import Any

from opentelemetry import trace

from . import _tracing
from ._config import ChildConfig
from ._plain import exception_dict, safe_str

CRASH_SIGNALS = frozenset(("SIGSEGV", "SIGABRT", "SIGFPE", "SIGBUS", "SIGILL"))
_log = logging.getLogger("mptrace.process")


def _send(event: dict[str, Any]) -> None:
    from ._session import current_stream

    stream = current_stream()
    if stream is not None:
        stream.send(event)


def lifecycle(transition: str, process: Any, **fields: Any) -> dict[str, Any]:
    span = getattr(process, "_mptrace_span", None)
    if span is not None:
        ctx = span.get_span_context()
    else:  # in a spawned child: the span stayed with the parent, its ids came along
        ctx = _tracing.span_context_of(getattr(process, "_mptrace_carrier", None))
    event: dict[str, Any] = {
        "kind": "lifecycle",
        "ts": time.time_ns(),
        "transition": transition,
        "target_pid": fields.pop("target_pid")
        if "target_pid" in fields
        else (process.pid if transition != "created" else None),
        "target_name": process.name,
        "start_method": getattr(process, "_start_method", None) or _default_method(),
        "process": _tracing._process_name(),
    }
    if ctx is not None and ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    event.update(fields)
    return event


def _default_method() -> str:
    return multiprocessing.get_start_method(allow_none=True) or "?"


def _signal_name(code: int | None) -> str | None:
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def crash_path(config: ChildConfig, pid: int) -> str:
    return os.path.join(os.path.dirname(config.address), f"crash-{pid}.txt")


# -- parent side -----------------------------------------------------------------


class Watch:
    """What the parent knows of one running child."""

    __slots__ = (
        "process", "span", "pid", "config", "terminated", "peak_rss", "max_threads",
        "cpu_user", "cpu_system", "ps", "sentinel", "claimed", "popen",
    )

    def __init__(self, process: Any, config: ChildConfig) -> None:
        self.process = process
        self.span = process._mptrace_span
        self.pid = process.pid
        self.config = config
        self.terminated: str | None = None
        self.sentinel = process.sentinel
        self.popen = process._popen  # outlives a close() of the process object
        self.claimed = False  # finished by exactly one of join, close, monitor
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


def before_start(process: Any, config: ChildConfig) -> None:
    """In the parent, just before ``start()``: the process span and its carrier."""
    tracer = _tracing.get_tracer()
    if tracer is None:
        return
    method = getattr(process, "_start_method", None) or _default_method()
    parent = getattr(process, "_mptrace_parent_carrier", None)
    span = tracer.start_span(
        f"process {process.name}",
        context=_tracing._propagator.extract(parent) if parent else None,
        start_time=getattr(process, "_mptrace_created_ns", None),
        attributes={
            "mptrace.span": "process",
            "mptrace.process.name": process.name,
            "mptrace.start_method": method,
            "process.parent_pid": os.getpid(),
            "mptrace.daemon": bool(process.daemon),
        },
    )
    span.add_event("created", timestamp=getattr(process, "_mptrace_created_ns", None))
    process._mptrace_span = span
    process._mptrace_carrier = _tracing.carrier(span)
    _send(lifecycle("created", process, ts=getattr(process, "_mptrace_created_ns", time.time_ns())))


def after_start(process: Any, config: ChildConfig) -> None:
    """In the parent, once the child exists: started, and watch it."""
    span = getattr(process, "_mptrace_span", None)
    if span is None:
        return
    started_ns = getattr(process, "_mptrace_start_ns", None) or time.time_ns()
    span.set_attribute("process.pid", process.pid)
    span.add_event("started", {"process.pid": process.pid}, timestamp=started_ns)
    _serialise_poll(process)
    _send(lifecycle("started", process, ts=started_ns))
    watch = Watch(process, config)
    watch.sample()
    process._mptrace_watch = watch
    monitor().watch(watch)


def observed_exit(process: Any) -> None:
    """``join()`` or ``close()`` saw the child's exit: record it now, once.

    Recording it here, in the caller's thread, means the span has ended when
    ``join()`` returns, and a child that ends right after joining its own
    children has closed their spans first.
    """
    watch = getattr(process, "_mptrace_watch", None)
    if watch is not None and monitor().claim(watch):
        finish(watch)


def terminated(process: Any, how: str) -> None:
    watch = getattr(process, "_mptrace_watch", None)
    if watch is None or process.exitcode is not None:
        return
    watch.terminated = how
    watch.span.add_event("terminated", {"mptrace.how": how})
    _send(lifecycle("terminated", process, how=how))


def _serialise_poll(process: Any) -> None:
    popen = getattr(process, "_popen", None)
    if popen is None:
        return
    original = popen.poll
    lock = threading.Lock()

    def poll(flag: int = os.WNOHANG) -> int | None:
        with lock:
            return original(flag)  # type: ignore[no-any-return]

    popen.poll = poll


def finish(watch: Watch, running_at_shutdown: bool = False) -> None:
    """The child has exited (or the session ends): close its span, say how."""
    process, span = watch.process, watch.span
    watch.sample()  # a fork or spawn child is a zombie now: its final CPU times
    code = None
    if not running_at_shutdown:
        try:
            code = watch.popen.wait(5.0)
        except Exception:
            code = watch.popen.returncode
    end_ns = time.time_ns()
    sig = _signal_name(code)
    attributes: dict[str, Any] = {
        "process.memory.peak_rss_bytes": watch.peak_rss,
        "process.threads.max": watch.max_threads,
    }
    if watch.cpu_user is not None:
        attributes["process.cpu.user_s"] = watch.cpu_user
        attributes["process.cpu.system_s"] = watch.cpu_system
    if code is not None:
        attributes["process.exit.code"] = code
    if sig:
        attributes["mptrace.exit.signal"] = sig
    if watch.terminated:
        attributes["mptrace.terminated"] = True
    crash = _read_crash(watch, wanted=sig in CRASH_SIGNALS)
    span.set_attributes(attributes)
    expected = watch.terminated and sig in ("SIGTERM", "SIGKILL")
    if running_at_shutdown:
        span.add_event("session ended while running")
    elif code != 0 and not expected:
        what = f"killed by {sig}" if sig else f"exited with code {code}"
        span.set_status(trace.Status(trace.StatusCode.ERROR, what))
    event_attrs: dict[str, Any] = {"exitcode": code if code is not None else -1}
    if sig:
        event_attrs["signal"] = sig
    if crash:
        event_attrs["crash"] = crash
    if not running_at_shutdown:
        span.add_event("exited", event_attrs, timestamp=end_ns)
    span.end(end_time=end_ns)
    if running_at_shutdown:
        return
    _send(
        lifecycle(
            "exited", process, ts=end_ns, target_pid=watch.pid, exitcode=code, signal=sig,
            cpu_user_s=watch.cpu_user, cpu_system_s=watch.cpu_system,
            peak_rss_bytes=watch.peak_rss, threads=watch.max_threads,
            **({"crash": crash} if crash else {}),
        )
    )
    if crash is not None:
        _log.error(
            "process %s (pid %d) died of %s; the Python stack of every thread:\n%s",
            process.name, watch.pid, sig, crash, extra={"crash_pid": watch.pid},
        )
    elif sig in CRASH_SIGNALS:
        _log.error("process %s (pid %d) died of %s", process.name, watch.pid, sig)


def _read_crash(watch: Watch, wanted: bool) -> str | None:
    """The child's faulthandler output if *wanted*; the file goes either way."""
    path = crash_path(watch.config, watch.pid)
    text = ""
    try:
        if wanted:
            with open(path, encoding="utf-8", errors="backslashreplace") as f:
                text = f.read()
        os.unlink(path)
    except OSError:
        pass
    return safe_str(text.strip()) or None


class Monitor:
    """One thread per process that starts children: sentinels and samples."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._watches: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mptrace-monitor", daemon=True)
        self._thread.start()

    def watch(self, watch: Watch) -> None:
        with self._lock:
            self._watches[watch.sentinel] = watch
        os.write(self._wake_w, b"w")

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
        while not self._stopping:
            with self._lock:
                sentinels = list(self._watches)
            timeout = max(0.0, next_sample - time.monotonic())
            try:
                ready = multiprocessing.connection.wait([self._wake_r, *sentinels], timeout)
            except (OSError, ValueError):  # a sentinel closed under us: look again
                continue
            for fd in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    watch = self._watches.get(fd)  # type: ignore[call-overload]
                if watch is not None and self.claim(watch):
                    self._finish(watch)
            if time.monotonic() >= next_sample:
                with self._lock:
                    watches = list(self._watches.values())
                for watch in watches:
                    watch.sample()
                next_sample = time.monotonic() + self.interval

    @staticmethod
    def _finish(watch: Watch, running_at_shutdown: bool = False) -> None:
        try:
            finish(watch, running_at_shutdown)
        except Exception as exc:  # telemetry must not take the program down
            _log.warning("could not record the exit of pid %s: %r", watch.pid, exc)

    def stop(self) -> None:
        """Record every child that has exited; close the spans of the rest."""
        self._stopping = True
        os.write(self._wake_w, b"s")
        self._thread.join(5.0)
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            if not self.claim(watch):
                continue
            try:
                exited = watch.popen.poll() is not None
            except Exception:
                exited = watch.popen.returncode is not None
            self._finish(watch, running_at_shutdown=not exited)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)


_monitor: Monitor | None = None
_monitor_lock = threading.Lock()


def monitor() -> Monitor:
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            from ._session import current_config

            config = current_config()
            _monitor = Monitor(config.sample_interval if config else 1.0)
            _register_fork_hook()
        return _monitor


def stop_monitor() -> None:
    global _monitor
    with _monitor_lock:
        mon, _monitor = _monitor, None
    if mon is not None:
        mon.stop()


_fork_hook = False


def _register_fork_hook() -> None:
    global _fork_hook
    if not _fork_hook:
        os.register_at_fork(after_in_child=_forget_monitor)
        _fork_hook = True


def _forget_monitor() -> None:
    # The thread did not cross the fork, and the parent's children are not ours.
    global _monitor, _monitor_lock
    _monitor_lock = threading.Lock()
    mon, _monitor = _monitor, None
    if mon is not None:
        for fd in (mon._wake_r, mon._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


# -- child side --------------------------------------------------------------------

_crash_file: Any = None


def child_running(process: Any, config: ChildConfig) -> None:
    """In the child, before ``run()``: join the parent's span; say so."""
    global _crash_file
    carrier = getattr(process, "_mptrace_carrier", None)
    _tracing.process_span_context = _tracing.span_context_of(carrier)
    _tracing.attach(carrier)  # for the child's whole life
    try:
        _crash_file = open(crash_path(config, os.getpid()), "w")
        faulthandler.enable(file=_crash_file, all_threads=True)
    except OSError:
        pass
    _send(lifecycle("running", process, target_pid=os.getpid()))


def child_finished(process: Any, exitcode: int) -> None:
    """In the child, after ``run()``: returned or raised, and what it used."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1 if os.uname().sysname == "Darwin" else 1024  # ru_maxrss: KiB on Linux
    exc = getattr(process, "_mptrace_exception", None)
    fields: dict[str, Any] = {
        "outcome": "raised" if exc is not None else "returned",
        "exitcode": exitcode,
        "cpu_user_s": usage.ru_utime,
        "cpu_system_s": usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * scale,
    }
    if exc is not None:
        fields["exc"] = exc
    _send(lifecycle("finished", process, target_pid=os.getpid(), **fields))


def record_exception(process: Any, exc: BaseException) -> None:
    process._mptrace_exception = exception_dict(exc)
