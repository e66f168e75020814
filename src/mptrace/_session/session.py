"""The public API: starting a session's listener, and shutting it down.

The process that called :func:`init` owns the session and starts its listener;
every participating process sends its events there through a participant of
its own (``_participant.participant``).
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mptrace._schema import profile as _profile
from mptrace._session import launch as _launch
from mptrace._session.joined import JoinedSession, joins_another
from mptrace._session.preload import preload_in_forkserver
from mptrace.exceptions import MptraceError

# What init() needs once its listener starts, imported by _imports() meanwhile.
if TYPE_CHECKING:
    from dataclasses import replace as _replace

    from mptrace._instrument import root as _root
    from mptrace._instrument import stdlib as _instrument
    from mptrace._listener import jsonl as _jsonl
    from mptrace._participant import participant as _participant
    from mptrace._schema import events as _events
    from mptrace._schema.config import ChildConfig, ListenerConfig
    from mptrace._session import env as _env
    from mptrace._session import exit as _exit
    from mptrace._session import reach as _reach
    from mptrace._session import restart as _restart
    from mptrace._session import waited as _waited
    from mptrace._session.echo import StderrRelay
    from mptrace.sinks import SinkSpec


def _imports() -> None:
    global _root, _instrument, _jsonl, _participant, _events, _env, _exit, _reach
    global _restart, _waited, _replace
    from dataclasses import replace as _replace

    from mptrace._instrument import root as _root
    from mptrace._instrument import stdlib as _instrument
    from mptrace._listener import jsonl as _jsonl
    from mptrace._participant import participant as _participant
    from mptrace._schema import events as _events
    from mptrace._session import env as _env
    from mptrace._session import exit as _exit
    from mptrace._session import reach as _reach
    from mptrace._session import restart as _restart
    from mptrace._session import waited as _waited


_lock = threading.RLock()
_session: Session | None = None


class Session:
    """A running mptrace session; returned by :func:`mptrace.init`.

    Use it as a context manager to shut down at the end of the block::

        with mptrace.init(exporters=["console", "jsonl:run.jsonl"]):
            main()
    """

    def __init__(
        self, listener_config: ListenerConfig, child_config: ChildConfig
    ) -> None:
        self.listener_config = listener_config
        self.child_config = child_config
        self.service_name = listener_config.service_name
        self.owner_pid = os.getpid()
        self._proc: subprocess.Popen[bytes] | None = None
        self._status: int | None = None  # the listener's answers: "ok", flush acks
        self._started = False
        self._closed = False
        self._events: list[dict[str, Any]] | None = None
        self._relay: StderrRelay | None = None
        self._restarter: _restart.Restarter | None = None
        #: Started by ``mptrace run``: the program's own init() joins it.
        self.runner = False
        self.instrumented = False  # by this session, which takes it out again
        self._root = _root.RootSpan()
        self.traces = "run"  # or "unit": see init(traces=...)
        self.reach: dict[str, str | None] = {}  # the environment before stages

    @property
    def address(self) -> str:
        """Path of the funnel's socket."""
        return self.child_config.address

    @property
    def run_id(self) -> str:
        """This run's id: on every event as ``run``, and ``service.instance.id``."""
        return self.child_config.session_id

    @property
    def listener_pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def active(self) -> bool:
        return self._proc is not None and not self._closed

    # -- start ---------------------------------------------------------------

    def start(self, launched: _launch.Launched | None = None) -> Session:
        """Join the listener *launched* by init() (``_launch``); on failure
        it is stopped. Idempotent: a second call does nothing."""
        if self._started or launched is None:
            return self
        self._started = True
        self._relay, (proc, status) = launched
        self._proc, self._status = proc, status
        _launch.send_config(proc, self.listener_config, self.child_config)
        # The listener builds its sinks while this process sets itself up.
        part = _participant.join(self.child_config, owner=True)
        _profile.mark("own install")
        try:
            _launch.confirm(proc, status)
        except BaseException:
            _participant.leave(part)
            self._close_relay()
            raise
        _profile.mark("listener ready")
        if self.child_config.tracing:
            per_unit = self.traces == "unit"
            self._root.start(self.service_name, self.run_id, per_unit)
        _profile.mark("run span")
        self._restarter = _restart.watch(self)  # a listener that dies is replaced
        atexit.register(self._atexit)
        return self

    # -- while it runs ---------------------------------------------------------

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Have the listener read what every stream holds and flush every
        sink; False if *timeout* seconds passed first or the session is over."""
        part = _participant.current()
        status = self._status
        if not self.active or part is None or status is None:
            return False
        part.send({"kind": _events.FLUSH, "process": "MainProcess"})
        if part.stream.failed:  # it tried the listener again, in vain
            return False
        if not select.select([status], [], [], timeout)[0]:
            return False
        flushed = os.read(status, 1) == b"f"
        if self._relay is not None:
            self._relay.drain()
        return flushed

    def events(self) -> list[dict[str, Any]]:
        """Every event the ``memory`` exporter received, as dicts, in order
        (flushed first while the session runs); empty without ``"memory"``."""
        if self._events is not None:
            return list(self._events)
        if self.active:
            self.force_flush()
        return _jsonl.read_memory(self.listener_config.session_dir)

    # -- shutdown ------------------------------------------------------------

    def _atexit(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        # Python joins non-daemon children after atexit handlers, once its
        # own hook has stopped managers and pools; do both first, so that what
        # the children log until they end still reaches the listener.
        _exit.finalise_stdlib()
        bound = self.listener_config.shutdown_timeout
        _waited.wait_children(bound, self.listener_config)
        self.shutdown()

    def shutdown(self, timeout: float | None = None) -> None:
        """Drain every stream, flush every exporter, stop the listener.

        Processes that outlive the session (a manager's server, a daemon)
        are not waited for: the listener stays on until their last stream
        closes, so what they log later still arrives.

        Idempotent; in any process but the owner it does nothing. Returns
        within *timeout* (default ``shutdown_timeout``) seconds plus 7 for the
        exporters at the most: a listener that takes longer is killed.
        """
        global _session
        if os.getpid() != self.owner_pid:
            return
        with _lock:
            if self._closed or not self._started:
                return
            self._closed = True
            atexit.unregister(self._atexit)
        _profile.mark("program")
        _restart.stop(self._restarter)  # the listener about to end stays ended
        limit = self.listener_config.shutdown_timeout if timeout is None else timeout
        part = _participant.current()
        if part is not None:
            part.stop_monitor()  # exits seen, spans of children still running closed
            _reach.end(self.reach)
            _exit.report_strangers()
            self._root.end()
            # Sent even after a fallback: the stream tries the listener again.
            part.send({"kind": _events.SHUTDOWN, "process": "MainProcess"})
        _profile.mark("end sent")
        stays = False
        if self._proc is not None:
            stays = _launch.wait(self._proc, limit + _launch.EXPORT_GRACE, self._status)
        _profile.mark("listener exit")
        if stays and self._proc is not None:
            _launch.lingering.append(self._proc)  # reaped by a later session
            if self._relay is not None:  # copies what the listener still says
                self._relay.close_at_end()
            self._relay = None
        self._close_relay()
        if part is not None:
            _participant.leave(part)
            part.stream.report()
        if self.instrumented:
            _instrument.uninstrument()
        with _lock:
            if _session is self:
                _session = None
        folder = self.listener_config.session_dir
        self._events = _jsonl.read_memory(folder)
        self._close_status()
        if not stays:  # else the listener does, at its end: a child starting
            shutil.rmtree(folder, ignore_errors=True)  # now finds the socket
        _profile.write("owner", "end")

    def _close_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()

    def _close_status(self) -> None:
        status, self._status = self._status, None
        if status is not None:
            os.close(status)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Children started and not joined still log: wait (managers outlive it).
        if os.getpid() == self.owner_pid and self.active:
            bound = self.listener_config.shutdown_timeout
            _waited.wait_children(bound, self.listener_config)
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "active"
        return (
            f"<mptrace.Session {self.service_name!r} {state} "
            f"listener pid={self.listener_pid}>"
        )


def init(
    service_name: str | None = None,
    exporters: Iterable[str | SinkSpec] | str | None = None,
    level: int | str | None = None,
    *,
    instrument: bool | None = None,
    redact: Iterable[str] | bool = True,
    processors: Iterable[Callable[..., Any]] | None = None,
    structlog: bool = True,
    tracing: bool = True,
    sample_interval: float = 1.0,
    block_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    traces: str | None = None,
    stacks_signal: int | str | None = "default",
    subprocesses: bool | None = None,
    stall_timeout: float | None = None,
) -> Session | JoinedSession:
    """Start a session: one listener process, and this process funnelling into it.

    An argument left out is read from the environment (``MPTRACE_EXPORTERS``,
    ``MPTRACE_LEVEL``, ``MPTRACE_INSTRUMENT``, ``OTEL_SERVICE_NAME``).

    Args:
        service_name: Names the program in traces; defaults to
            ``OTEL_SERVICE_NAME`` or the script's name.
        exporters: Where events go: ``"console"`` (the default),
            ``"jsonl:PATH"``, ``"memory"`` (see :meth:`Session.events`),
            ``"otlp"``/``"jaeger"`` (gRPC), ``"otlp+http"``, or a sink of
            your own (:mod:`mptrace.sinks`).
        level: The lowest level funnelled (default INFO).
        instrument: The stdlib's processes, pools and executors participate
            like mptrace's drop-ins (:func:`mptrace.instrument`); on by default.
        redact: ``True`` redacts the values of secret-looking keys
            (:data:`mptrace.processors.DEFAULT_SECRET_KEYS`) in each process,
            an iterable of key names those instead, ``False`` nothing.
        processors: structlog processors the listener runs on every log
            event after redaction; importable (not from ``__main__``).
        structlog: Configure structlog so that its events are funnelled too.
        tracing: Each child, pool task and ``@traced`` call is a span, and
            each child's lifecycle is recorded (in the program's own provider).
        sample_interval: Seconds between psutil samples of each child.
        block_timeout: The longest a logging call waits for a listener that
            has stopped reading, before that process falls back to its stderr.
        shutdown_timeout: The longest :meth:`Session.shutdown` drains.
        traces: ``"run"`` (the default, or ``MPTRACE_TRACES``): the run is
            one trace; ``"unit"``: each top-level unit of work (a child, a
            ``Pool.map``, a ``@traced`` call) a trace linked to the run's span.
        stacks_signal: The signal for ``mptrace stacks`` (name or number;
            ``MPTRACE_STACKS_SIGNAL``, else SIGUSR2); ``None`` or 0: none.
        subprocesses: Python programs started with ``subprocess``, a shell
            or ``os.exec*`` join the session (``MPTRACE_SUBPROCESS``; on).
        stall_timeout: A pool with work and no progress this long (seconds;
            ``MPTRACE_STALL_TIMEOUT``, else 60; 0: never) is told, with stacks.

    Raises:
        ConfigurationError: A setting is not one mptrace can use.
        ListenerError: The listener process could not start.
    """
    global _session
    if joins_another(_session):
        return JoinedSession()
    _profile.start()
    _profile.mark("import")
    _launch.lingering[:] = [p for p in _launch.lingering if p.poll() is None]
    with _lock:
        if _session and _session.active and _session.owner_pid == os.getpid():
            raise MptraceError(
                "mptrace.init() was already called in this process; call "
                "mptrace.shutdown() before starting another session."
            )
        folder = _launch.make_dir()
        address = os.path.join(folder, "funnel.sock")
        # The listener boots while this process imports the rest, and checks.
        launched = _launch.begin(address)
        session: Session | None = None
        try:
            _imports()
            instrument_ = _env.instrument(instrument)
            subprocesses_ = _env.subprocesses(subprocesses)
            traces_ = _env.traces(traces)
            listener_config, child_config = _env.configs(
                service_name=service_name,
                exporters=exporters,
                level=level,
                redact=redact,
                processors=processors,
                structlog=structlog,
                tracing=tracing,
                sample_interval=sample_interval,
                block_timeout=block_timeout,
                shutdown_timeout=shutdown_timeout,
                stacks_signal=stacks_signal,
                stall_timeout=stall_timeout,
            )
            _profile.mark("options")
            preload_in_forkserver()
            listener_config.session_dir = folder
            child_config = _replace(
                child_config, address=address, instrument=instrument_
            )
            session = Session(listener_config, child_config)
            session.traces = traces_
            session.start(launched)  # on failure, it stops the listener
        except BaseException:
            if session is None or not session._started:
                _launch.stop_unstarted(launched)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        _session = session
    if instrument_ and not _instrument.instrumented():
        _instrument.instrument(ipc=session.child_config.trace_ipc)
        session.instrumented = True
    if subprocesses_:
        session.reach = _reach.carry(folder, session.child_config)
    _profile.mark("instrumentation")
    return session


def shutdown(timeout: float | None = None) -> None:
    """Shut down this process's session, if it owns one. Idempotent."""
    session = _session
    if session is not None:
        session.shutdown(timeout)


def get_session() -> Session | None:
    """The session this process owns, or None."""
    session = _session
    if session is None or session.owner_pid != os.getpid():
        return None
    return session
