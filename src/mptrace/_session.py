"""Sessions: starting the listener, joining it, and shutting it down.

One process owns a session: the one that called :func:`init`. It starts the
listener, and every process that participates (the owner, its children through
``mptrace.Process`` and contexts, and forked children of any of them) sends
its events there through a :class:`~mptrace._stream.Stream` of its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any, Callable, Iterable

from ._config import (
    ChildConfig,
    ListenerConfig,
    check_processors,
    default_service_name,
    parse_exporters,
    parse_level,
    parse_timeout,
)
from ._handler import FunnelHandler, FunnelLoggerFactory, StructlogForwarder
from ._stream import Stream
from .exceptions import ConfigurationError, ListenerError, MptraceError
from .processors import DEFAULT_SECRET_KEYS, Redact

#: Seconds beyond ``shutdown_timeout`` that shutdown gives the listener to export.
_EXPORT_GRACE = 7.0
#: Seconds ``init`` waits for the listener to say it is ready.
LISTENER_START_TIMEOUT = 60.0
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Participation:
    """This process's part in a session: its stream, handler and saved state."""

    def __init__(self, config: ChildConfig, ppid: int | None = None) -> None:
        self.config = config
        redact = None if config.redact_keys is None else Redact(config.redact_keys)
        self.stream = Stream(
            config.address, config.authkey, config.block_timeout, ppid, redact
        )
        trace_context = None
        if config.tracing:
            from . import _tracing

            _tracing.install_provider(config.service_name)
            trace_context = _tracing.add_trace_context
        self.handler = FunnelHandler(self.stream, trace_context=trace_context)
        root = logging.getLogger()
        self._old_level = root.level
        root.addHandler(self.handler)
        root.setLevel(config.level)
        self._old_structlog: dict[str, Any] | None = None
        if config.structlog:
            self._configure_structlog(trace_context)

    def _configure_structlog(self, trace_context: Callable[[dict[str, Any]], None] | None) -> None:
        import structlog

        self._old_structlog = structlog.get_config()
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                StructlogForwarder(trace_context=trace_context),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(self.config.level),
            logger_factory=FunnelLoggerFactory(self.stream),
            cache_logger_on_first_use=False,
        )

    def leave(self) -> None:
        """Put logging and structlog back as they were; close the stream."""
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._old_level)
        if self._old_structlog is not None:
            import structlog

            structlog.reset_defaults()
            structlog.configure(**self._old_structlog)
        self.stream.close()


_lock = threading.RLock()
_participation: _Participation | None = None
_session: Session | None = None


def current_config() -> ChildConfig | None:
    """The configuration children of this process join with, if any."""
    part = _participation
    return None if part is None else part.config


def current_stream() -> Stream | None:
    part = _participation
    return None if part is None else part.stream


def join(config: ChildConfig, ppid: int | None = None) -> None:
    """Make this (child) process participate in the session of *config*.

    *ppid* is the pid of the process that started this one.
    """
    global _participation
    with _lock:
        if _participation is not None:
            if _participation.config.session_id == config.session_id:
                return  # inherited through fork: the stream reconnects by itself
            _participation.leave()
        _participation = _Participation(config, ppid)


class Session:
    """A running mptrace session; returned by :func:`mptrace.init`.

    Use it as a context manager to shut down at the end of the block::

        with mptrace.init(exporters=["console", "jsonl:run.jsonl"]):
            main()
    """

    def __init__(
        self,
        listener_config: ListenerConfig,
        level: int,
        block_timeout: float,
        structlog: bool,
        redact_keys: tuple[str, ...] | None = None,
        tracing: bool = True,
        sample_interval: float = 1.0,
    ) -> None:
        self._tracing = tracing
        self._sample_interval = sample_interval
        self.listener_config = listener_config
        self._redact_keys = redact_keys
        self.service_name = listener_config.service_name
        self.owner_pid = os.getpid()
        self._level = level
        self._block_timeout = block_timeout
        self._structlog = structlog
        self._authkey = secrets.token_bytes(32)
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self.child_config: ChildConfig | None = None

    @property
    def address(self) -> str | None:
        """Path of the funnel's socket."""
        return None if self.child_config is None else self.child_config.address

    @property
    def listener_pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def active(self) -> bool:
        return self._proc is not None and not self._closed

    # -- start ---------------------------------------------------------------

    def _make_socket(self) -> tuple[socket.socket, str]:
        base = tempfile.gettempdir()
        if len(base) > 60:  # AF_UNIX paths are limited to ~100 bytes
            base = "/tmp"
        self._dir = tempfile.mkdtemp(prefix="mptrace-", dir=base)  # mode 0700
        path = os.path.join(self._dir, "funnel.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        os.chmod(path, 0o600)
        lsock.listen(1024)
        return lsock, path

    def start(self) -> Session:
        lsock, path = self._make_socket()
        status_r, status_w = os.pipe()
        try:
            self._spawn_listener(lsock, status_w)
        finally:
            lsock.close()
            os.close(status_w)
        try:
            self._await_listener(status_r)
        except BaseException:
            self._kill_listener()
            self._remove_dir()
            raise
        finally:
            os.close(status_r)
        self.child_config = ChildConfig(
            address=path,
            authkey=self._authkey,
            level=self._level,
            block_timeout=self._block_timeout,
            structlog=self._structlog,
            session_id=os.path.basename(self._dir or path),
            redact_keys=self._redact_keys,
            tracing=self._tracing,
            service_name=self.service_name,
            sample_interval=self._sample_interval,
        )
        join(self.child_config)
        atexit.register(self._atexit)
        return self

    def _spawn_listener(self, lsock: socket.socket, status_w: int) -> None:
        inner = pickle.dumps((self.listener_config, self._authkey))
        payload = pickle.dumps((list(sys.path), inner))
        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
            "from mptrace._listener import bootstrap; bootstrap()"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, str(lsock.fileno()), str(status_w)],
            stdin=subprocess.PIPE,
            pass_fds=(lsock.fileno(), status_w),
            close_fds=True,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(payload)
        self._proc.stdin.close()

    def _await_listener(self, status_r: int) -> None:
        ready, _, _ = select.select([status_r], [], [], LISTENER_START_TIMEOUT)
        answer = b""
        if ready:
            while chunk := os.read(status_r, 65536):
                answer += chunk
        if answer != b"ok":
            why = answer.decode("utf-8", "replace") or "it said nothing"
            if not ready:
                why = f"it did not answer within {LISTENER_START_TIMEOUT:.0f} s"
            raise ListenerError(f"The mptrace listener process did not start: {why}")

    # -- shutdown ------------------------------------------------------------

    def _atexit(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        # Python joins non-daemon children after atexit handlers; join them
        # first so that what they log until they end still reaches the listener.
        import multiprocessing

        for child in multiprocessing.active_children():
            if not child.daemon:
                child.join()
        self.shutdown()

    def shutdown(self, timeout: float | None = None) -> None:
        """Drain every stream, flush every exporter, stop the listener.

        Idempotent; in any process but the owner it does nothing. Returns
        within about *timeout* seconds (default: the session's
        ``shutdown_timeout``) plus two: a listener that takes longer is killed.
        """
        global _session, _participation
        if os.getpid() != self.owner_pid:
            return
        with _lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self._atexit)
        limit = self.listener_config.shutdown_timeout if timeout is None else timeout
        from ._lifecycle import stop_monitor

        stop_monitor()  # exits seen, spans of children still running closed
        part = _participation
        stream = part.stream if part is not None else None
        if stream is not None and not stream.failed:
            stream.send({"kind": "shutdown", "process": "MainProcess"})
        proc = self._proc
        if proc is not None:
            # The listener drains for up to *limit*, then its OTLP exporters
            # may take up to 5 s more to send what is queued.
            bound = limit + _EXPORT_GRACE
            try:
                proc.wait(bound)
            except subprocess.TimeoutExpired:
                sys.stderr.write(
                    f"mptrace: warning: the listener did not stop within {bound:.0f} s; "
                    "killed it.\n"
                )
                self._kill_listener()
        with _lock:
            if part is not None and _participation is part:
                part.leave()
                _participation = None
            if _session is self:
                _session = None
        self._remove_dir()

    def _kill_listener(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "active"
        return f"<mptrace.Session {self.service_name!r} {state} listener pid={self.listener_pid}>"


def init(
    service_name: str | None = None,
    exporters: Iterable[str] | str = ("console",),
    level: int | str = "INFO",
    *,
    redact: Iterable[str] | bool = True,
    processors: Iterable[Callable[..., Any]] | None = None,
    structlog: bool = True,
    tracing: bool = True,
    sample_interval: float = 1.0,
    block_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
) -> Session:
    """Start a session: one listener process, and this process funnelling into it.

    Args:
        service_name: Names the program in traces; defaults to
            ``OTEL_SERVICE_NAME`` or the script's name.
        exporters: Where events go: ``"console"``, ``"jsonl:PATH"``,
            ``"otlp"``/``"jaeger"`` (gRPC) and ``"otlp+http"``.
        level: The lowest level funnelled, for stdlib logging and structlog.
        redact: ``True`` redacts the values of secret-looking keys
            (:data:`mptrace.processors.DEFAULT_SECRET_KEYS`), an iterable of key
            names redacts those instead, ``False`` turns redaction off.
            Redaction runs in each process before an event leaves it.
        processors: structlog processors the listener runs on every log event,
            after redaction; they must be importable (not from ``__main__``).
        structlog: Configure structlog so that its events are funnelled too.
        tracing: Make each child process, pool task and ``@traced`` call a
            span, and record every child's lifecycle; the tracer provider is
            the user's own when one is set.
        sample_interval: Seconds between psutil samples of each running
            child's CPU, memory and threads.
        block_timeout: The longest a logging call waits for a listener that
            has stopped reading, before that process falls back to its stderr.
        shutdown_timeout: The longest :meth:`Session.shutdown` drains.

    Raises:
        ConfigurationError: A setting is not one mptrace can use.
        ListenerError: The listener process could not start.
    """
    global _session
    if _in_child():
        return JoinedSession()
    procs = check_processors(processors)
    redact_keys = _redact_keys(redact)
    listener_config = ListenerConfig(
        service_name=service_name or default_service_name(),
        exporters=parse_exporters(exporters),
        processors=procs,
        owner_pid=os.getpid(),
        shutdown_timeout=parse_timeout("shutdown_timeout", shutdown_timeout),
    )
    level_no = parse_level(level)
    block = parse_timeout("block_timeout", block_timeout)
    with _lock:
        if _session is not None and _session.active and _session.owner_pid == os.getpid():
            raise MptraceError(
                "mptrace.init() was already called in this process; call "
                "mptrace.shutdown() before starting another session."
            )
        session = Session(
            listener_config,
            level_no,
            block,
            structlog,
            redact_keys,
            tracing=bool(tracing),
            sample_interval=parse_timeout("sample_interval", sample_interval),
        )
        session.start()
        _session = session
    return session


def _redact_keys(redact: object) -> tuple[str, ...] | None:
    if redact is True:
        return DEFAULT_SECRET_KEYS
    if redact is False or redact is None:
        return None
    if isinstance(redact, str) or not isinstance(redact, Iterable):
        raise ConfigurationError(
            "redact= takes True (the default secret keys), False (no redaction) "
            "or a sequence of key names such as ('password', 'ssn')."
        )
    keys = tuple(redact)
    if not all(isinstance(k, str) and k for k in keys):
        raise ConfigurationError("redact= key names must be non-empty strings.")
    return keys


def _in_child() -> bool:
    """True in a child process, where init() joins the parent's session.

    A spawn or forkserver child imports the parent's main module as
    ``__mp_main__``, running any top-level ``init()`` again; a fork child
    inherits the parent's session object.
    """
    main = sys.modules.get("__main__")
    if getattr(main, "__name__", None) == "__mp_main__":
        return True
    session = _session
    return session is not None and session.owner_pid != os.getpid()


class JoinedSession:
    """What :func:`init` returns in a child process: the parent's session.

    The child already funnels into its parent's listener (when it was started
    through mptrace); this handle starts nothing and shutting it down does
    nothing, so code shared by parent and children may call ``init()``.
    """

    active = False
    listener_pid = None

    def shutdown(self, timeout: float | None = None) -> None:
        """Nothing to do: the parent owns the session."""

    def __enter__(self) -> JoinedSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def __repr__(self) -> str:
        return "<mptrace.JoinedSession (the parent owns the session)>"


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


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """A structlog logger whose events reach the listener as dicts.

    Before :func:`init` (or with ``structlog=False``) it is a plain
    ``structlog.get_logger()``; bound values travel with every event.
    """
    import structlog

    args = (name,) if name is not None else ()
    return structlog.get_logger(*args, **initial_values)

