"""The participant: this process's one part in a session.

Exactly one per process at a time (``current()``). It owns the stream to the
listener and runs the sending chain, a loop over plain callables in
structlog's shape::

    source (_sources) ──▶ stamp ──▶ trace context ──▶ redaction ──▶ Stream.send

It installs itself beside the program's logging, structlog and OpenTelemetry
set-up and takes itself out again (``leave``); it has the one fork hook: a
forked child keeps the participant, with a fresh stream, no parent's monitor.
"""

from __future__ import annotations

import os
import platform
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import trace

from mptrace._participant import ambient as _ambient
from mptrace._participant import stacks as _stacks
from mptrace._participant.guest import StructlogGuest
from mptrace._participant.logging_guest import LoggingGuest
from mptrace._participant.otel_guest import (
    program_provider,
    set_aside_program_processors,
    unwatch_late_provider,
    watch_late_provider,
)
from mptrace._participant.own_provider import new_provider
from mptrace._participant.plain import plain, safe_repr
from mptrace._participant.sources import Send, process_name
from mptrace._participant.stream import Stream, write_stderr
from mptrace._schema import events as _events
from mptrace._schema.config import ChildConfig
from mptrace._schema.events import Event, hex_id
from mptrace.processors import Redact

Step = Callable[[Event], Event]
#: A span logs are tied to but not added to: the run's, which would gather them all.
quiet: list[Any] = [None]


class Monitor(Protocol):
    """What the participant needs of the exit monitor (``_instrument.monitor``)."""

    def watch(self, watch: Any) -> None: ...
    def claim(self, watch: Any) -> bool: ...
    def stop(self) -> None: ...
    def forget(self) -> None: ...


# -- steps of the sending chain -------------------------------------------------


def stamp(pid: int, ppid: int, run: str) -> Step:
    """Who sent it: pid, the starting process's pid, and the run."""

    def stamp(event: Event) -> Event:
        event["pid"] = pid
        event["ppid"] = ppid
        event["run"] = run
        return event

    return stamp


def trace_context() -> Step:
    """Tie a log event to the current span, and the span to the log event."""
    get_current_span, finder = trace.get_current_span, _ambient.finder
    last: tuple[Any, str, str] = (None, "", "")

    def trace_context(event: Event) -> Event:
        nonlocal last
        if event["kind"] != _events.LOG:
            return event
        span = get_current_span()
        if finder[0] is not None:  # a task's thread (``ambient``)
            span = _ambient.work_span(span)
        if span is last[0]:  # the same span as last time: its ids are known
            _, trace_hex, span_hex = last
        else:
            ctx = span.get_span_context()
            if not ctx.is_valid:
                return event
            trace_hex, span_hex = hex_id(ctx.trace_id, 32), hex_id(ctx.span_id, 16)
            last = (span, trace_hex, span_hex)
        event["trace_id"] = trace_hex
        event["span_id"] = span_hex
        if span.is_recording() and span is not quiet[0]:
            attributes = {
                "mptrace.log.message": event.get("event", ""),
                "mptrace.log.level": event.get("level", ""),
                "mptrace.log.logger": event.get("logger", ""),
            }
            exc = _events.exception_attributes(event.get("exc"))
            exc.pop("exception.stacktrace", None)
            attributes.update(exc)
            span.add_event("log", attributes)
        return event

    return trace_context


def redaction(redact: Redact) -> Step:
    """Redaction in the sending process: secrets never leave it. Fails closed."""

    def redaction(event: Event) -> Event:
        try:
            return redact(None, event["kind"], event)
        except Exception as exc:  # keep the record, not its fields
            kept = {k: v for k, v in event.items() if k in _events.STRUCTURE_KEYS}
            kept["mptrace_error"] = (
                f"redaction failed ({exc!r}); the record's fields were withheld"
            )
            return kept

    return redaction


# -- the participant ------------------------------------------------------------


class Participant:
    """This process's stream, sending chain and installed hooks."""

    def __init__(
        self, config: ChildConfig, ppid: int | None = None, owner: bool = False
    ) -> None:
        self.config = config
        #: This process started the session (its spans go to its own exporters).
        self.owner = owner
        self.pid = os.getpid()
        # Under forkserver the starter is not os.getppid() (the fork server).
        self.ppid = os.getppid() if ppid is None else ppid
        self.stream = Stream(
            config.address,
            config.authkey,
            config.block_timeout,
            hello=self._hello,
            fallback=_render_on_stderr,
        )
        steps: list[Step] = [stamp(self.pid, self.ppid, config.session_id)]
        if config.tracing:
            steps.append(trace_context())
        if config.redact_keys is not None:
            steps.append(redaction(Redact(config.redact_keys)))
        self.steps = tuple(steps)
        #: The span context of this process's own process span, in a child.
        self.process_span_context: trace.SpanContext | None = None
        #: The exit monitor of this process's children, once it starts one.
        self.monitor: Monitor | None = None
        self._resources: dict[int, dict[str, Any]] = {}
        self._logging = LoggingGuest(self.send, config.level, config.console)
        self._structlog: StructlogGuest | None = None

    def send(self, event: Event) -> None:
        """Run the sending chain on *event* and write it. Never raises."""
        for step in self.steps:
            event = step(event)
        self.stream.send(event)

    def _hello(self) -> Event:
        return {
            "kind": _events.HELLO,
            "pid": self.pid,
            "ppid": self.ppid,
            "process": process_name(),
        }

    def after_fork_in_child(self) -> None:
        self.pid, self.ppid = os.getpid(), os.getppid()
        self.steps = (
            stamp(self.pid, self.ppid, self.config.session_id),
            *self.steps[1:],
        )
        self.stream.after_fork_in_child()
        self._resources = {}
        if self.owner and self.config.tracing:
            self.owner = False
            provider = program_provider()
            if provider is not None:  # its batch thread would die with this child
                set_aside_program_processors(provider, _processor)
        monitor, self.monitor = self.monitor, None
        if monitor is not None:  # its thread did not cross the fork
            monitor.forget()

    # -- install and leave --

    def install(self) -> None:
        """Join logging, structlog and OpenTelemetry beside the program's own."""
        self._logging.install()
        if self.config.structlog:
            self._structlog = StructlogGuest(self.send, self.config.level)
            self._structlog.install()
        if self.config.tracing:
            install_provider(self.config.service_name, self.owner)
        _stacks.arm(os.path.dirname(self.config.address), self.config.stacks_signal)

    def leave(self) -> None:
        """Take mptrace out of logging and structlog; close the stream."""
        self._logging.leave()
        if self.owner:
            unwatch_late_provider()
        if self._structlog is not None:
            self._structlog.leave()
        self.stop_monitor()
        self.stream.close()
        _stacks.disarm()

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
            # The run: the same value as every event's "run".
            cached["service.instance.id"] = self.config.session_id
            # A forked child shares its parent's provider: say who made the span.
            cached["process.pid"] = self.pid
            cached["process.parent_pid"] = self.ppid  # the starter, as logs say
            if len(self._resources) > 64:
                self._resources.clear()
            self._resources[id(resource)] = cached
        return cached


def _render_on_stderr(event: Event) -> None:
    """The listener is gone: this process renders its events on its own stderr."""
    try:
        from mptrace._render.lines import render_fallback

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


def join(
    config: ChildConfig, ppid: int | None = None, owner: bool = False
) -> Participant:
    """Make this process participate in the session of *config*.

    *ppid* is the pid of the process that started this one; *owner* is true
    in the process that started the session. In a forked child of a
    participant of the same session, the inherited participant stays.
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
        part = _current = Participant(config, ppid, owner)
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


class FunnelSpanProcessor:
    """``SpanProcessor`` whose ``on_end`` sends the span as a plain event.

    *resource_of* gives the plain resource of a span's SDK resource (cached
    by the participant). It sends before ``end()`` returns, so a child that
    then dies has lost nothing.
    """

    def __init__(
        self, send: Send, resource_of: Callable[[Any], dict[str, Any]]
    ) -> None:
        self.send = send
        self.resource_of = resource_of

    def on_start(self, span: Any, parent_context: Any = None) -> None: ...

    def _on_ending(self, span: Any) -> None: ...  # SDK >= 1.29 calls this too

    def on_end(self, span: Any) -> None:
        try:
            event = _events.span_to_dict(
                span, self.resource_of(span.resource), process_name(), plain
            )
        except Exception as exc:  # never let telemetry raise into the program
            event = {
                "kind": _events.SPAN,
                "name": safe_repr(getattr(span, "name", "?")),
                "mptrace_error": f"span could not be converted: {safe_repr(exc)}",
            }
        self.send(event)

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every span was written when it ended


#: The one span processor of this process; it sends through the current participant.
_processor = FunnelSpanProcessor(send, lambda r: _resource_of(r))
_processor._mptrace = True  # type: ignore[attr-defined]
_own_resource: list[Any] = [None]
#: Sends a span not yet ended: if its process ends first, the listener ends it.
announce = _processor.on_end


def _resource_of(resource: Any) -> dict[str, Any]:
    part = _current
    if part is None:
        return {k: plain(v) for k, v in resource.attributes.items()}
    return part.resource_of(resource)


def install_provider(service_name: str, owner: bool = True) -> None:
    """Make sure this process's spans reach the funnel: through the program's
    SDK provider if there is one (in a child, in place of the program's
    processors: ``otel_guest``), else through a global one of mptrace's."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if owner:
        watch_late_provider()
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        if not getattr(provider, "_mptrace_processor", False):
            provider.add_span_processor(_processor)  # type: ignore[arg-type]
            provider._mptrace_processor = True  # type: ignore[attr-defined]
        if not owner and program_provider() is provider:
            set_aside_program_processors(provider, _processor)
        return
    resource = Resource.create(
        {
            "service.name": service_name,
            "process.runtime.name": platform.python_implementation(),
            "process.runtime.version": platform.python_version(),
            "host.name": socket.gethostname(),
        }
    )
    provider = new_provider(resource)
    _own_resource[0] = provider.resource
    provider.add_span_processor(_processor)
    provider._mptrace_processor = True
    provider._mptrace_own = True
    trace.set_tracer_provider(provider)
