"""Spans in every participating process, sent to the listener as plain dicts.

Each participating process has an OpenTelemetry SDK ``TracerProvider`` (the
user's own, if one is set) with :class:`FunnelSpanProcessor`: when a span
ends, it becomes a plain dict on the process's stream before ``end()``
returns, so a child that then dies has lost nothing. Children never batch and
never talk to a collector; the listener does.

Context crosses processes as a W3C ``traceparent`` carrier, with every process
and with every task, so a reused pool worker parents each task under the span
that submitted it.

The ``@mptrace.traced`` decorator, built on :func:`get_tracer` and
``_end_with`` here, is in ``_traced.py``.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._plain import plain, safe_repr

SCOPE = "mptrace"
_propagator = TraceContextTextMapPropagator()

#: The span context of this process's own process span, when a parent made one.
process_span_context: trace.SpanContext | None = None


# -- spans as plain data ---------------------------------------------------------

_resource_cache: dict[tuple[int, int, str | None], dict[str, Any]] = {}


_own_resource: Any = None


def _resource(resource: Any) -> dict[str, Any]:
    from ._session import current_config

    config = current_config()
    service = config.service_name if config is not None else None
    key = (id(resource), os.getpid(), service)
    cached = _resource_cache.get(key)
    if cached is None:
        cached = {k: plain(v) for k, v in resource.attributes.items()}
        if resource is _own_resource and service:
            # The global provider outlives sessions; each names its own service.
            cached["service.name"] = service
        # A forked child shares its parent's provider: say who made the span.
        cached["process.pid"] = os.getpid()
        cached["process.parent_pid"] = os.getppid()
        if len(_resource_cache) > 64:
            _resource_cache.clear()
        _resource_cache[key] = cached
    return cached


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_to_plain(span: Any) -> dict[str, Any]:
    """A finished SDK span as a plain dict (see docs/jsonl-schema.md)."""
    ctx = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    status = span.status
    return {
        "kind": "span",
        "name": span.name,
        "trace_id": _hex(ctx.trace_id, 32),
        "span_id": _hex(ctx.span_id, 16),
        "parent_span_id": _hex(parent.span_id, 16) if parent is not None else None,
        "span_kind": span.kind.name.lower(),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": status.status_code.name.lower(),
        "status_message": status.description,
        "attributes": {k: plain(v) for k, v in (span.attributes or {}).items()},
        "events": [
            {
                "name": e.name,
                "ts": e.timestamp,
                "attributes": {k: plain(v) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ],
        "links": [
            {
                "trace_id": _hex(link.context.trace_id, 32),
                "span_id": _hex(link.context.span_id, 16),
                "attributes": {k: plain(v) for k, v in (link.attributes or {}).items()},
            }
            for link in span.links
        ],
        "scope": {
            "name": scope.name if scope else "",
            "version": scope.version if scope else None,
        },
        "resource": _resource(span.resource),
        "process": _process_name(),
    }


def _process_name() -> str:
    from ._stream import _process_name as name

    return name()


class FunnelSpanProcessor:
    """``SpanProcessor`` that sends every ended span to the current session.

    Outside a session (before ``init``, after ``shutdown``) it does nothing,
    so it can stay on a provider that outlives sessions.
    """

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:  # SDK >= 1.29 calls this too
        pass

    def on_end(self, span: Any) -> None:
        from ._session import current_stream

        stream = current_stream()
        if stream is None:
            return
        try:
            event = span_to_plain(span)
        except Exception as exc:  # never let telemetry raise into the program
            event = {
                "kind": "span",
                "name": safe_repr(getattr(span, "name", "?")),
                "mptrace_error": f"span could not be converted: {safe_repr(exc)}",
            }
        stream.send(event)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every span was written when it ended


_processor = FunnelSpanProcessor()


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
    global _own_resource
    provider = TracerProvider(resource=resource)
    _own_resource = provider.resource
    provider.add_span_processor(_processor)  # type: ignore[arg-type]
    provider._mptrace_processor = True  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)


# -- the tracer, or nothing ----------------------------------------------------------

_cached: tuple[Any, Any] = (None, None)


def get_tracer() -> Any:
    """mptrace's tracer from the global provider, or None when nothing records."""
    global _cached
    provider = trace.get_tracer_provider()
    if provider is _cached[0]:
        return _cached[1]
    if isinstance(provider, trace.ProxyTracerProvider) or isinstance(
        provider, trace.NoOpTracerProvider
    ):
        tracer = None
    else:
        from . import __version__

        tracer = provider.get_tracer(SCOPE, __version__)
    _cached = (provider, tracer)
    return tracer


# -- context across processes -----------------------------------------------------------


def carrier(span: Any = None) -> dict[str, str]:
    """A W3C carrier for the current context, or for *span*."""
    ctx = trace.set_span_in_context(span) if span is not None else None
    out: dict[str, str] = {}
    _propagator.inject(out, context=ctx)
    return out


def attach(carrier: dict[str, str] | None) -> object | None:
    """Make *carrier*'s span the current parent; returns a token for detach."""
    if not carrier:
        return None
    return otel_context.attach(_propagator.extract(carrier))


def detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


def span_context_of(carrier: dict[str, str] | None) -> trace.SpanContext | None:
    if not carrier:
        return None
    ctx = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
    return ctx if ctx.is_valid else None


# -- logs inside spans ----------------------------------------------------------------


_last_ids: tuple[Any, str, str] = (None, "", "")


def add_trace_context(event: dict[str, Any]) -> None:
    """Tie a log event to the current span, and the span to the log event."""
    global _last_ids
    span = trace.get_current_span()
    if span is _last_ids[0]:  # the same span as last time: its ids are known
        _, trace_hex, span_hex = _last_ids
    else:
        ctx = span.get_span_context()
        if not ctx.is_valid:
            return
        trace_hex, span_hex = _hex(ctx.trace_id, 32), _hex(ctx.span_id, 16)
        _last_ids = (span, trace_hex, span_hex)
    event["trace_id"] = trace_hex
    event["span_id"] = span_hex
    if span.is_recording():
        attributes = {
            "log.message": event.get("event", ""),
            "log.level": event.get("level", ""),
            "log.logger": event.get("logger", ""),
        }
        exc = event.get("exc")
        if exc:
            attributes["exception.type"] = exc.get("type", "")
            attributes["exception.message"] = exc.get("message", "")
        span.add_event("log", attributes)


# -- ending spans ------------------------------------------------------------------------


def _end_with(span: Any, exc: BaseException | None) -> None:
    if exc is not None and not isinstance(exc, (GeneratorExit, StopIteration, StopAsyncIteration)):
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.end()


# -- pool tasks --------------------------------------------------------------------------


def _run_task(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    carrier: dict[str, str],
    name: str,
    items: int,
) -> Any:
    """Call *func* as one task: a span under *carrier*'s, linked to this worker."""
    tracer = get_tracer()
    if tracer is None:
        return func(*args, **kwargs)
    token = attach(carrier)
    try:
        links = []
        if process_span_context is not None:
            links.append(trace.Link(process_span_context, {"mptrace.link": "worker process"}))
        span = tracer.start_span(
            name,
            links=links,
            attributes={"mptrace.span": "task", "mptrace.task.items": items, "process.pid": os.getpid()},
        )
        inner = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, Exception):  # logged inside the task's span
                import logging

                logging.getLogger("mptrace.task").error(
                    "%s raised %s", name, type(exc).__name__, exc_info=True
                )
            _end_with(span, exc)
            raise
        finally:
            otel_context.detach(inner)
        _end_with(span, None)
        return result
    finally:
        detach(token)


class TaskCall:
    """A pool task's function with the context it was submitted in.

    Pickled with the task; in the worker, each call is a span named
    ``task <function>`` under the submitting span, linked to the worker's own
    process span.
    """

    __slots__ = ("func", "carrier", "name")

    def __init__(self, func: Callable[..., Any], carrier: dict[str, str], name: str | None = None) -> None:
        self.func = func
        self.carrier = carrier
        self.name = name or f"task {_qualname(func)}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskCall, (self.func, self.carrier, self.name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _run_task(self.func, args, kwargs, self.carrier, self.name, 1)


class ChunkCall:
    """The mapper of a ``Pool.map``/``starmap`` task: one span per chunk.

    A map task is what the pool hands a worker at once, a chunk of
    ``chunksize`` items (the unit ``maxtasksperchild`` counts too); its span
    says how many items it carried (``mptrace.task.items``) and records the
    exception of the item that failed. ``chunksize=1`` gives a span per item.
    """

    __slots__ = ("mapper", "carrier", "name")

    def __init__(self, mapper: Callable[..., Any], carrier: dict[str, str], name: str) -> None:
        self.mapper = mapper
        self.carrier = carrier
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChunkCall, (self.mapper, self.carrier, self.name))

    def __call__(self, args: tuple[Any, Any]) -> Any:
        chunk = args[1]
        items = len(chunk) if hasattr(chunk, "__len__") else 1
        return _run_task(self.mapper, (args,), {}, self.carrier, self.name, items)


def _qualname(func: Any) -> str:
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}" if module and module != "builtins" else name
