"""The life of every child: its process span, its transitions, its exit.

Parent side::

    Process.__init__ ── created          (span event, lifecycle record)
    Process.start()  ── span "process <name>" starts; started (pid known)
    terminate()/kill() ── terminated
    _monitor: waits on every child's sentinel, samples psutil while it runs;
    at exit ── exited (code or signal, CPU, peak RSS), span ends

Child side (in ``_bootstrap``, before and after ``run()``)::

    running ── the parent's span becomes this process's current parent
    finished ── returned or raised, the child's own getrusage

What mptrace knows of one process object lives in one :class:`ProcessState`
on it (``process._mptrace``); only what the child needs crosses with it.
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import multiprocessing
import os
import resource
import time
from typing import Any

from opentelemetry import trace

from mptrace._instrument import stall as _stall
from mptrace._instrument import tracing as _tracing
from mptrace._instrument.monitor import Monitor, Watch, serialise_poll
from mptrace._participant import participant as _participant
from mptrace._participant.participant import Participant
from mptrace._participant.plain import exception_dict, safe_str
from mptrace._participant.sources import process_name
from mptrace._schema import events as _events
from mptrace._schema.config import ChildConfig

CRASH_SIGNALS = frozenset(("SIGSEGV", "SIGABRT", "SIGFPE", "SIGBUS", "SIGILL"))
_log = logging.getLogger("mptrace.process")


class ProcessState:
    """mptrace's part of one ``Process`` object, in the parent and the child."""

    __slots__ = (
        "carrier",
        "config",
        "created_ns",
        "exception",
        "parent_carrier",
        "span",
        "start_ns",
        "traced",
        "watch",
    )  # fmt: skip
    #: What crosses to the child with the process object.
    _CROSSES = ("config", "carrier", "created_ns")

    def __init__(self) -> None:
        self.config: ChildConfig | None = None
        self.carrier: dict[str, str] | None = None
        self.parent_carrier: dict[str, str] | None = None  # a pool's, for its workers
        self.created_ns = time.time_ns()
        self.start_ns: int | None = None
        self.span: Any = None
        self.watch: Watch | None = None
        self.exception: dict[str, str] | None = None
        self.traced = False

    def __getstate__(self) -> dict[str, Any]:
        # Spans and watches are the parent's; ids travel in the carrier.
        return {key: getattr(self, key) for key in self._CROSSES}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        for key, value in state.items():
            setattr(self, key, value)


def state_of(process: Any) -> ProcessState:
    state: ProcessState | None = process.__dict__.get("_mptrace")
    if state is None:
        state = process.__dict__["_mptrace"] = ProcessState()
    return state


def start_method(process: Any) -> str:
    method = getattr(process, "_start_method", None)
    return method or multiprocessing.get_start_method()


def lifecycle(
    transition: str, process: Any, target_pid: int | None, **fields: Any
) -> _events.Event:
    """A ``lifecycle`` event about *process*, tied to its process span."""
    state = state_of(process)
    event = _events.lifecycle_event(
        transition, target_pid, process.name, start_method(process), process_name()
    )
    if state.span is not None:
        ctx = state.span.get_span_context()
    else:  # in a spawned child: the span stayed with the parent, its ids came along
        ctx = _tracing.span_context_of(state.carrier)
    if ctx is not None and ctx.is_valid:
        event["trace_id"] = _events.hex_id(ctx.trace_id, 32)
        event["span_id"] = _events.hex_id(ctx.span_id, 16)
    event.update(fields)
    return event


def crash_path(config: ChildConfig, pid: int) -> str:
    return os.path.join(os.path.dirname(config.address), f"crash-{pid}.txt")


# -- parent side ----------------------------------------------------------------


def before_start(process: Any, part: Participant) -> None:
    """In the parent, just before ``start()``: the process span and its carrier."""
    state = state_of(process)
    state.config = part.config
    tracer = _tracing.get_tracer()
    if tracer is None:
        return
    span = tracer.start_span(
        f"process {process.name}",
        context=_tracing.parent_context(_tracing.context_of(state.parent_carrier)),
        start_time=state.created_ns,
        attributes={
            "mptrace.span": "process",
            "mptrace.process.name": process.name,
            "mptrace.start_method": start_method(process),
            "process.parent_pid": os.getpid(),
            "mptrace.daemon": bool(process.daemon),
        },
    )
    span.add_event("created", timestamp=state.created_ns)
    state.span = span
    state.carrier = _tracing.carrier(span)
    part.send(lifecycle("created", process, None, ts=state.created_ns))


def after_start(process: Any, part: Participant) -> None:
    """In the parent, once the child exists: started, and watch it."""
    state = state_of(process)
    span = state.span
    if span is None:
        return
    started_ns = state.start_ns or time.time_ns()
    span.set_attribute("process.pid", process.pid)
    span.add_event("started", {"process.pid": process.pid}, timestamp=started_ns)
    serialise_poll(process)
    part.send(lifecycle("started", process, process.pid, ts=started_ns))
    watch = state.watch = Watch(process, span, part.config)
    watch.sample()
    monitor = part.monitor
    if monitor is None:
        config = part.config
        stalls = functools.partial(
            _stall.check, config.stall_timeout, os.path.dirname(config.address)
        )
        monitor = part.monitor = Monitor(config.sample_interval, finish, stalls)
    monitor.watch(watch)


def observed_exit(process: Any) -> None:
    """``join()`` or ``close()`` saw the child's exit: record it now, once.

    Recording it here, in the caller's thread, means the span has ended when
    ``join()`` returns, and a child that ends right after joining its own
    children has closed their spans first.
    """
    watch = state_of(process).watch
    part = _participant.current()
    monitor = part.monitor if part is not None else None
    if watch is None or monitor is None:
        return
    if monitor.claim(watch):
        finish(watch, False)
    else:  # the monitor's thread is recording it: done before join() returns
        watch.done.wait(5.0)


def terminated(process: Any, how: str) -> None:
    watch = state_of(process).watch
    # A closed process has no exit code to read (terminate() then raises).
    if (
        watch is None
        or getattr(process, "_closed", False)
        or process.exitcode is not None
    ):
        return
    watch.terminated = how
    watch.span.add_event("terminated", {"mptrace.how": how})
    # A pool's worker (made by _tasks._pool_worker) stopped by its pool is no news.
    pool = {"by_pool": True} if state_of(process).parent_carrier is not None else {}
    _participant.send(lifecycle("terminated", process, process.pid, how=how, **pool))


def finish(watch: Watch, running_at_shutdown: bool = False) -> None:
    """The child has exited (or the session ends): close its span, say how."""
    try:
        _finish(watch, running_at_shutdown)
    finally:
        watch.release()


def _finish(watch: Watch, running_at_shutdown: bool) -> None:
    span = watch.span
    watch.sample()  # a fork or spawn child is a zombie now: its final CPU times
    code = None if running_at_shutdown else watch.exit_code(wait=True)
    end_ns = time.time_ns()
    sig = _events.signal_name(code)
    attributes: dict[str, Any] = {
        "mptrace.process.memory.peak_rss": watch.peak_rss,
        "mptrace.process.threads.max": watch.max_threads,
    }
    if watch.cpu_user is not None:
        attributes["mptrace.process.cpu.user"] = watch.cpu_user
        attributes["mptrace.process.cpu.system"] = watch.cpu_system
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
        span.end(end_time=end_ns)
        return
    if code != 0 and not expected:
        what = f"killed by {sig}" if sig else f"exited with code {code}"
        span.set_status(trace.Status(trace.StatusCode.ERROR, what))
    event_attrs: dict[str, Any] = {
        "process.exit.code": code if code is not None else -1
    }
    if sig:
        event_attrs["mptrace.exit.signal"] = sig
    if crash:
        event_attrs["mptrace.exit.crash"] = crash
    span.add_event("exited", event_attrs, timestamp=end_ns)
    span.end(end_time=end_ns)
    _participant.send(
        lifecycle(
            "exited", watch.process, watch.pid, ts=end_ns, exitcode=code,
            signal=sig, cpu_user_s=watch.cpu_user, cpu_system_s=watch.cpu_system,
            peak_rss_bytes=watch.peak_rss, threads=watch.max_threads,
            **({"crash": crash} if crash else {}),
        )
    )  # fmt: skip
    name = watch.process.name
    if crash is not None:
        _log.error(
            "process %s (pid %d) died of %s; the Python stack of every thread:\n%s",
            name, watch.pid, sig, crash, extra={"crash_pid": watch.pid},
        )  # fmt: skip
    elif sig in CRASH_SIGNALS:
        _log.error("process %s (pid %d) died of %s", name, watch.pid, sig)


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


# -- child side -----------------------------------------------------------------

_crash_file: Any = None


def child_running(process: Any, part: Participant) -> None:
    """In the child, before ``run()``: join the parent's span; say so."""
    global _crash_file
    state = state_of(process)
    part.process_span_context = _tracing.span_context_of(state.carrier)
    _tracing.attach(state.carrier)  # for the child's whole life
    # and for its other threads and their asyncio tasks
    _tracing.set_default_parent(_tracing.context_of(state.carrier))
    try:
        _crash_file = open(crash_path(part.config, os.getpid()), "w")
        faulthandler.enable(file=_crash_file, all_threads=True)
    except OSError:
        pass
    part.send(lifecycle("running", process, os.getpid()))
    state.traced = True


def child_finished(process: Any, exitcode: int) -> None:
    """In the child, after ``run()``: returned or raised, and what it used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1 if os.uname().sysname == "Darwin" else 1024  # ru_maxrss: KiB on Linux
    exc = state_of(process).exception
    fields: dict[str, Any] = {
        "outcome": "raised" if exc is not None else "returned",
        "exitcode": exitcode,
        "cpu_user_s": usage.ru_utime,
        "cpu_system_s": usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * scale,
    }
    if exc is not None:
        fields["exc"] = exc
    _participant.send(lifecycle("finished", process, os.getpid(), **fields))


def record_exception(process: Any, exc: BaseException) -> None:
    state_of(process).exception = exception_dict(exc)
