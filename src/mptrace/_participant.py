"""The participant: this process's one part in a session.

Exactly one per process at a time (``current()``). It owns the stream to the
listener and runs the sending chain, a loop over plain callables in
structlog's shape::

    source (_sources) ──▶ stamp ──▶ trace context ──▶ redaction ──▶ Stream.send

It installs itself beside the program's own logging, structlog and
OpenTelemetry set-up and takes itself out again (``leave``), and it has the
one fork hook: a forked child keeps the participant, with a fresh stream and
no parent's monitor.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import trace

from . import _events
from ._config import ChildConfig
from ._events import Event, hex_id
from ._plain import plain
from ._sources import (
    FunnelHandler,
    FunnelLoggerFactory,
    FunnelSpanProcessor,
    StructlogForwarder,
    process_name,
)
from ._stream import Stream, write_stderr
from .processors import Redact

Step = Callable[[Event], Event]


class Monitor(Protocol):
    """What the participant needs of the exit monitor (``_monitor.Monitor``)."""

    def watch(self, watch: Any) -> None: ...
    def claim(self, watch: Any) -> bool: ...
    def stop(self) -> None: ...
    def forget(self) -> None: ...


# -- steps of the sending chain -------------------------------------------------


class Stamp:
    """Who sent it: pid, the starting process's pid, and the run."""

    __slots__ = ("pid", "ppid", "run")

    def __init__(self, ppid: int | None, run: str) -> None:
        self.pid = os.getpid()
        # Under forkserver the starter is not os.getppid() (the fork server).
        self.ppid = os.getppid() if ppid is None else ppid
        self.run = run

    def __call__(self, event: Event) -> Event:
        event["pid"] = self.pid
        event["ppid"] = self.ppid
        event["run"] = self.run
        return event


class TraceContext:
    """Tie a log event to the current span, and the span to the log event."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Any, str, str] = (None, "", "")

    def __call__(self, event: Event) -> Event:
        if event["kind"] != _events.LOG:
            return event
        span = trace.get_current_span()
        if span is self._last[0]:  # the same span as last time: its ids are known
            _, trace_hex, span_hex = self._last
        else:
            ctx = span.get_span_context()
            if not ctx.is_valid:
                return event
            trace_hex, span_hex = hex_id(ctx.trace_id, 32), hex_id(ctx.span_id, 16)
            self._last = (span, trace_hex, span_hex)
        event["trace_id"] = trace_hex
        event["span_id"] = span_hex
        if span.is_recording():
            attributes = {
                "log.message": event.get("event", ""),
                "log.level": event.get("level", ""),
                "log.logger": event.get("logger", ""),
            }
            exc = _events.exception_attributes(event.get("exc"))
            exc.pop("exception.stacktrace", None)
            attributes.update(exc)
            span.add_event("log", attributes)
        return event


class RedactStep:
    """Redaction in the sending process: secrets never leave it. Fails closed."""

    __slots__ = ("redact",)

    def __init__(self, redact: Redact) -> None:
        self.redact = redact

    def __call__(self, event: Event) -> Event:
        try:
            return self.redact(None, event["kind"], event)
        except Exception as exc:  # keep the record, not its fields
            kept = {k: v for k, v in event.items() if k in _events.STRUCTURE_KEYS}
            kept["mptrace_error"] = (
                f"redaction failed ({exc!r}); the record's fields were withheld"
            )
            return kept


# -- the participant ------------------------------------------------------------


class Participant:
    """This process's stream, sending chain and installed hooks."""

    def __init__(self, config: ChildConfig, ppid: int | None = None) -> None:
        self.config = config
        self.stamp = Stamp(ppid, config.session_id)
        self.stream = Stream(
            config.address,
            config.authkey,
            config.block_timeout,
            hello=self._hello,
            fallback=_render_on_stderr,
        )
        steps: list[Step] = [self.stamp]
        if config.tracing:
            steps.append(TraceContext())
        if config.redact_keys is not None:
            steps.append(RedactStep(Redact(config.redact_keys)))
        self.steps = tuple(steps)
        #: The span context of this process's own process span, in a child.
        self.process_span_context: trace.SpanContext | None = None
        #: The exit monitor of this process's children, once it starts one.
        self.monitor: Monitor | None = None
        self._resources: dict[int, dict[str, Any]] = {}
        self._handler = FunnelHandler(self.send)
        self._old_level: int | None = None
        self._old_structlog: dict[str, Any] | None = None

    def send(self, event: Event) -> None:
        """Run the sending chain on *event* and write it. Never raises."""
        for step in self.steps:
            event = step(event)
        self.stream.send(event)

    def _hello(self) -> Event:
        return {
            "kind": _events.HELLO,
            "pid": self.stamp.pid,
            "ppid": self.stamp.ppid,
            "process": process_name(),
        }

    def after_fork_in_child(self) -> None:
        self.stamp = Stamp(None, self.stamp.run)
        self.steps = (self.stamp, *self.steps[1:])
        self.stream.after_fork_in_child()
        self._resources = {}
        monitor, self.monitor = self.monitor, None
        if monitor is not None:  # its thread did not cross the fork
            monitor.forget()

    # -- install and leave --

    def install(self) -> None:
        root = logging.getLogger()
        self._old_level = root.level
        root.addHandler(self._handler)
        root.setLevel(self.config.level)
        if self.config.structlog:
            self._install_structlog()
        if self.config.tracing:
            install_provider(self.config.service_name)

    def _install_structlog(self) -> None:
        import structlog

        self._old_structlog = structlog.get_config()
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                StructlogForwarder(),  # type: ignore[list-item]
            ],
            wrapper_class=structlog.make_filtering_bound_logger(self.config.level),
            logger_factory=FunnelLoggerFactory(self.send),
            cache_logger_on_first_use=False,
        )

    def leave(self) -> None:
        """Put logging and structlog back as they were; close the stream."""
        root = logging.getLogger()
        root.removeHandler(self._handler)
        if self._old_level is not None:
            root.setLevel(self._old_level)
        if self._old_structlog is not None:
            import structlog

            structlog.reset_defaults()
            structlog.configure(**self._old_structlog)
        self.stop_monitor()
        self.stream.close()

    def stop_monitor(self) -> None:
        """Record the children that have exited; close the spans of the rest."""
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.stop()

    def resource_of(self, resource: Any) -> dict[str, Any]:
        """A span's SDK resource as plain data, naming this session and process."""
        cached = self._resources.get(id(resource))
        if cached is None:
            cached = {k: plain(v) for k, v in resource.attributes.items()}
            if resource is _own_resource[0]:
                # The global provider outlives sessions; each names its own service.
                cached["service.name"] = self.config.service_name
            # A forked child shares its parent's provider: say who made the span.
            cached["process.pid"] = self.stamp.pid
            cached["process.parent_pid"] = os.getppid()
            if len(self._resources) > 64:
                self._resources.clear()
            self._resources[id(resource)] = cached
        return cached


def _render_on_stderr(event: Event) -> None:
    """The listener is gone: this process renders its events on its own stderr."""
    try:
        from ._render import render_fallback

        line = render_fallback(event)
    except Exception as exc:  # pragma: no cover - renderer bug
        line = f"{event!r} (rendering failed: {exc!r})"
    if line is not None:
        write_stderr(line + "\n")


# -- this process's participant -------------------------------------------------

_lock = threading.RLock()
_current: Participant | None = None
_fork_hook = False


def current() -> Participant | None:
    """This process's participant, or None outside a session."""
    return _current


def send(event: Event) -> None:
    """Send *event* through this process's participant, if there is one."""
    part = _current
    if part is not None:
        part.send(event)


def join(config: ChildConfig, ppid: int | None = None) -> Participant:
    """Make this process participate in the session of *config*.

    *ppid* is the pid of the process that started this one. In a forked child
    of a participant of the same session, the inherited participant stays.
    """
    global _current, _fork_hook
    with _lock:
        part = _current
        if part is not None:
            if part.config.session_id == config.session_id:
                return part
            part.leave()
        if not _fork_hook:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook = True
        part = _current = Participant(config, ppid)
        part.install()
        return part


def leave(part: Participant) -> None:
    """Take *part* out, if it is still this process's participant."""
    global _current
    with _lock:
        if _current is part:
            _current = None
    part.leave()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    part = _current
    if part is not None:
        part.after_fork_in_child()


# -- OpenTelemetry ------------------------------------------------------------

#: The one span processor of this process; it sends through the current participant.
_processor = FunnelSpanProcessor(send, lambda r: _resource_of(r))
_own_resource: list[Any] = [None]


def _resource_of(resource: Any) -> dict[str, Any]:
    part = _current
    if part is None:
        return {k: plain(v) for k, v in resource.attributes.items()}
    return part.resource_of(resource)


def install_provider(service_name: str) -> None:
    """Make sure this process's spans reach the funnel.

    With the user's own SDK provider in place, mptrace adds its processor to
    it; otherwise it sets an SDK provider of its own as the global one.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        if not getattr(provider, "_mptrace_processor", False):
            provider.add_span_processor(_processor)  # type: ignore[arg-type]
            provider._mptrace_processor = True  # type: ignore[attr-defined]
        return
    resource = Resource.create(
        {
            "service.name": service_name,
            "process.runtime.name": platform.python_implementation(),
            "process.runtime.version": platform.python_version(),
            "host.name": socket.gethostname(),
        }
    )
    provider = TracerProvider(resource=resource)
    _own_resource[0] = provider.resource
    provider.add_span_processor(_processor)  # type: ignore[arg-type]
    provider._mptrace_processor = True  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)
