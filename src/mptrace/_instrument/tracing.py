"""Spans: mptrace's tracer, context across processes, and running code in a span.

Spans are made with the OpenTelemetry SDK in every participating process;
the participant's span processor
(``_participant.participant.FunnelSpanProcessor``) sends each one when it
ends. Context crosses processes as a W3C ``traceparent`` carrier, with every
process and with every task, so a reused pool worker parents each task under
the span that submitted it.

There is one way to run code inside a span, :func:`run_in_span` (and its
per-step form :func:`step_in_span` for generators), used by ``@traced`` and
by pool tasks alike. It differs from the SDK's ``start_as_current_span`` in
one point on purpose: any ``BaseException`` (``KeyboardInterrupt``,
``SystemExit``, a task cancelled) is recorded on the span and sets ERROR,
except the ones that end an iteration (``StopIteration``, ``GeneratorExit``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mptrace._instrument import ipc as _ipc
from mptrace._instrument import resources as _resources
from mptrace._participant import ambient as _ambient
from mptrace._participant import frames as _frames
from mptrace._participant import participant as _participant
from mptrace._participant.plain import exception_dict
from mptrace._participant.stream import write_stderr
from mptrace._schema import events as _events
from mptrace._version import __version__

SCOPE = "mptrace"
_propagator = TraceContextTextMapPropagator()
_NOT_FAILURES = (GeneratorExit, StopIteration, StopAsyncIteration)


# -- the tracer, or nothing --------------------------------------------------------

_cached: tuple[Any, Any] = (None, None)


def get_tracer() -> Any:
    """mptrace's tracer from the global provider, or None when nothing records."""
    global _cached
    provider = trace.get_tracer_provider()
    if provider is _cached[0]:
        return _cached[1]
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        tracer = None
    else:
        tracer = provider.get_tracer(SCOPE, __version__)
    _cached = (provider, tracer)
    return tracer


def session_tracer() -> Any:
    """The tracer when this process is in a session with tracing on, else None."""
    part = _participant.current()
    if part is None or not part.config.tracing:
        return None
    return get_tracer()


# -- context across processes -----------------------------------------------------


#: The parent of mptrace's spans where no span is current: the run's span in
#: the owner, the process's own span in a child. The program's context is
#: current in one thread only (``init()``'s, the child's main thread); a
#: thread or an asyncio loop of its own starts with none.
_default_parent: list[Any] = [None]


def set_default_parent(context: Any) -> None:
    """Make *context* (an OpenTelemetry context, or None) the default parent."""
    _default_parent[0] = context


def parent_context(context: Any = None) -> Any:
    """The context a span of mptrace's starts in: *context*, else the current
    one, else the default parent."""
    if context is not None:
        return context
    current = trace.get_current_span()
    span = _ambient.work_span(current)  # a task an engine runs in a thread
    if span is not current:
        return trace.set_span_in_context(span)
    return None if current.get_span_context().is_valid else _default_parent[0]


def carrier(span: Any = None) -> dict[str, str]:
    """A W3C carrier for the current context (see ``parent_context``), or for *span*."""
    ctx = trace.set_span_in_context(span) if span is not None else parent_context()
    out: dict[str, str] = {}
    _propagator.inject(out, context=ctx)
    return out


def context_of(carrier: dict[str, str] | None) -> Any:
    """The OpenTelemetry context a carrier describes (None for no carrier)."""
    return _propagator.extract(carrier) if carrier else None


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


# -- running code in a span ----------------------------------------------------------


def end_span(span: Any, exc: BaseException | None) -> None:
    """End *span*; an exception (but not the end of an iteration) is an error."""
    if exc is not None and not isinstance(exc, _NOT_FAILURES):
        # Not the SDK's record_exception: its exception.escaped is deprecated.
        span.add_event("exception", _events.exception_attributes(exception_dict(exc)))
        span.set_status(
            trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        )
    try:
        span.end()
    except Exception as err:  # a span processor's failure is not the program's
        write_stderr(f"mptrace: warning: ending span {span!r} failed: {err!r}\n")


def step_in_span(span: Any, step: Callable[[], Any]) -> Any:
    """Run *step* with *span* current; if it fails, end the span with that.

    The end of an iteration passes through: the caller ends the span then.
    """
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        return step()
    except _NOT_FAILURES:
        raise
    except BaseException as exc:
        end_span(span, exc)
        raise
    finally:
        otel_context.detach(token)


def run_in_span(span: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *func* with *span* current, and end the span however it ends."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        _frames.hide(exc)  # the span's stack trace starts at the program's
        end_span(span, exc)
        raise
    finally:
        otel_context.detach(token)
    end_span(span, None)
    return result


# -- pool tasks --------------------------------------------------------------------

_task_log = logging.getLogger("mptrace.task")


def _run_task(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    carrier: dict[str, str],
    name: str,
    items: int,
    of: int | None = None,
) -> Any:
    """Call *func* as one task: a span under *carrier*'s, linked to this worker.

    *of*: the items of the whole map the task is part of (0: not known), for
    the console's progress line; None for a task of its own.
    """
    tracer = get_tracer()
    if tracer is None:
        return func(*args)
    part = _participant.current()
    own = part.process_span_context if part is not None else None
    links = [trace.Link(own, {"mptrace.link": "worker process"})] if own else []
    links += _ipc.take_links()  # items it was handed on a queue or a pipe
    attributes: dict[str, Any] = {
        "mptrace.span": "task",
        "mptrace.task.items": items,
        "process.pid": os.getpid(),
    }
    if of is not None:
        attributes["mptrace.map.items"] = of
    span = tracer.start_span(
        name, context=context_of(carrier), links=links, attributes=attributes
    )
    return run_in_span(span, _measured, span, name, func, *args)


def _measured(span: Any, name: str, func: Callable[..., Any], *args: Any) -> Any:
    """Call *func*, its failure logged inside the span, and put on the span
    the worker's CPU and RSS change over the call (``_resources``)."""
    cpu, rss = _resources.cpu_ns(), _resources.rss()
    try:
        return func(*args)
    except Exception as exc:  # logged inside the task's span
        _frames.hide(exc)  # its traceback starts at the program's function
        _task_log.error("%s raised %s", name, type(exc).__name__, exc_info=exc)
        raise
    finally:
        _resources.put(span, cpu, rss)


class TaskCall:
    """A pool task's function with the context it was submitted in.

    Pickled with the task; in the worker, each call is a span named
    ``task <function>`` under the submitting span, linked to the worker's own
    process span.
    """

    __slots__ = ("carrier", "func", "name", "of")

    def __init__(
        self,
        func: Callable[..., Any],
        carrier: dict[str, str],
        name: str | None = None,
        of: int | None = None,
    ) -> None:
        self.func = func
        self.carrier = carrier
        self.name = name or f"task {qualname(func)}"
        self.of = of  # the items of the map it is part of (see _run_task)

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskCall, (self.func, self.carrier, self.name, self.of))

    @_frames.hiding  # the task's errors: the pool reports them
    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        # self positional-only: the function's own ``self=`` is its keyword.
        call = self.func if not kwargs else _with_kwargs(self.func, kwargs)
        return _run_task(call, args, self.carrier, self.name, 1, self.of)


def _with_kwargs(
    func: Callable[..., Any], kwargs: dict[str, Any]
) -> Callable[..., Any]:
    return lambda *args: func(*args, **kwargs)


class ChunkCall:
    """The mapper of a ``Pool.map``/``starmap`` task: one span per chunk.

    A map task is what the pool hands a worker at once, a chunk of
    ``chunksize`` items (the unit ``maxtasksperchild`` counts too); its span
    says how many items it carried (``mptrace.task.items``) and records the
    exception of the item that failed. ``chunksize=1`` gives a span per item.
    """

    __slots__ = ("carrier", "mapper", "name", "of")

    def __init__(
        self,
        mapper: Callable[..., Any],
        carrier: dict[str, str],
        name: str,
        of: int | None = None,
    ) -> None:
        self.mapper = mapper
        self.carrier = carrier
        self.name = name
        self.of = of

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChunkCall, (self.mapper, self.carrier, self.name, self.of))

    @_frames.hiding  # the chunk's errors: the pool reports them
    def __call__(self, args: tuple[Any, Any]) -> Any:
        chunk = args[1]
        items = len(chunk) if hasattr(chunk, "__len__") else 1
        return _run_task(self.mapper, (args,), self.carrier, self.name, items, self.of)


def qualname(func: Any) -> str:
    """``module.qualname`` of a function, as span names show it."""
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}" if module and module != "builtins" else name
