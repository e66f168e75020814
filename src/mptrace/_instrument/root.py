"""One run, one trace: the session's root span, and the trace in the environment.

When no span is current at ``init()``, the owner opens a span named after
the service and makes it current until shutdown, so every process, task and
``@traced`` span of the run falls under it. An incoming ``TRACEPARENT`` /
``TRACESTATE`` (OpenTelemetry's environment carrier: a CI job, a scheduler,
a shell script) makes that span a child of the caller's trace. Each
participating process puts its own span in its environment as
``TRACEPARENT``, so a program it starts with ``subprocess`` or ``os.exec*``
joins the trace too.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from mptrace._instrument import tracing as _tracing
from mptrace._participant import participant as _participant

_ENV = {"traceparent": "TRACEPARENT", "tracestate": "TRACESTATE"}


def carrier_from_env() -> dict[str, str] | None:
    """The caller's trace, from ``TRACEPARENT``/``TRACESTATE``, or None."""
    found = {key: os.environ[var] for key, var in _ENV.items() if os.environ.get(var)}
    return found if "traceparent" in found else None


def put_in_env(carrier: dict[str, str] | None) -> dict[str, str | None]:
    """Export *carrier* as ``TRACEPARENT``/``TRACESTATE``; returns what was there."""
    old = {var: os.environ.get(var) for var in _ENV.values()}
    if carrier:
        for key, var in _ENV.items():
            if key in carrier:
                os.environ[var] = carrier[key]
            else:
                os.environ.pop(var, None)
    return old


def restore_env(old: dict[str, str | None]) -> None:
    for var, value in old.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


class RootSpan:
    """The span of a whole run, in the process that owns the session."""

    def __init__(self) -> None:
        self.span: Any = None
        self._token: object | None = None
        self._old_env: dict[str, str | None] = {}

    def start(self, service_name: str, run_id: str, per_unit: bool = False) -> None:
        """Open the run's span, unless the program is already inside one.

        *per_unit* (``traces="unit"``): the span is not made current, so each
        top-level unit of work (a child process, a ``Pool.map``, a top-level
        ``@traced`` call) starts a trace of its own, linked to this span.
        """
        tracer = _tracing.get_tracer()
        if tracer is None or trace.get_current_span().get_span_context().is_valid:
            return
        self.span = tracer.start_span(
            service_name,
            context=_tracing.context_of(carrier_from_env()),
            attributes={"mptrace.span": "run", "mptrace.run": run_id},
        )
        _participant.quiet[0] = self.span
        if per_unit:
            _linker.root = self.span
            _linker.add_to(trace.get_tracer_provider())
            return
        context = trace.set_span_in_context(self.span)
        self._token = otel_context.attach(context)
        # In the program's other threads, where init()'s context is not current.
        _tracing.set_default_parent(context)
        self._old_env = put_in_env(_tracing.carrier(self.span))

    def end(self) -> None:
        """End the run's span, and put the environment back. Idempotent."""
        span, self.span = self.span, None
        if span is None:
            return
        if _linker.root is span:
            _linker.root = None
        token, self._token = self._token, None
        if token is not None and trace.get_current_span() is span:
            otel_context.detach(token)  # type: ignore[arg-type]
        _tracing.set_default_parent(None)
        restore_env(self._old_env)
        _participant.quiet[0] = None
        span.end()


class _UnitLinks:
    """A span processor: a span that starts a trace of its own (no parent)
    gets a link to the run's span, so a backend can go from one to the other."""

    def __init__(self) -> None:
        self.root: Any = None
        self._on: set[int] = set()  # providers it was added to

    def add_to(self, provider: Any) -> None:
        add = getattr(provider, "add_span_processor", None)
        if add is not None and id(provider) not in self._on:
            self._on.add(id(provider))
            add(self)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        root = self.root
        if root is None or span is root or span.parent is not None:
            return
        span.add_link(root.get_span_context(), {"mptrace.link": "run"})

    def _on_ending(self, span: Any) -> None:  # newer SDKs call it on every processor
        pass

    def on_end(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_linker = _UnitLinks()
