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

from . import _participant, _tracing

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

    def start(self, service_name: str, run_id: str) -> None:
        """Open the run's span, unless the program is already inside one."""
        tracer = _tracing.get_tracer()
        if tracer is None or trace.get_current_span().get_span_context().is_valid:
            return
        self.span = tracer.start_span(
            service_name,
            context=_tracing.context_of(carrier_from_env()),
            attributes={"mptrace.span": "run", "mptrace.run": run_id},
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        _participant.quiet[0] = self.span
        self._old_env = put_in_env(_tracing.carrier(self.span))

    def end(self) -> None:
        """End the run's span, and put the environment back. Idempotent."""
        span, self.span = self.span, None
        if span is None:
            return
        token, self._token = self._token, None
        if token is not None and trace.get_current_span() is span:
            otel_context.detach(token)  # type: ignore[arg-type]
        restore_env(self._old_env)
        _participant.quiet[0] = None
        span.end()
