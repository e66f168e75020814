"""``@mptrace.traced``: every call of the decorated function is a span.

The decorator starts a span with mptrace's tracer (see ``tracing.get_tracer``)
around each call, makes it current while the function's own code runs, and
ends it, recording an exception and setting the ERROR status: all through
``tracing.run_in_span`` / ``step_in_span``, the one way mptrace runs code in
a span, which pool tasks use too. Functions, generator functions, coroutine
functions and async generator functions each get their own wrapper. With no
provider recording, no span is made.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from typing import Any, TypeVar, overload

from opentelemetry.trace import INVALID_SPAN

from mptrace._instrument import ipc as _ipc
from mptrace._instrument.tracing import (
    end_span,
    get_tracer,
    parent_context,
    qualname,
    run_in_span,
    step_in_span,
)
from mptrace._participant import frames as _frames
from mptrace._participant.plain import safe_repr, safe_str

F = TypeVar("F", bound=Callable[..., Any])


_ATTR_TYPES = (str, bool, int, float)


def _attribute(value: Any) -> Any:
    if type(value) in _ATTR_TYPES:
        return (
            value
            if type(value) is not str or len(value) <= 1024
            else value[:1024] + "…"
        )
    text = safe_repr(value)
    return text if len(text) <= 1024 else text[:1024] + "…"


def _args_attributes(
    signature: inspect.Signature | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    try:
        bound = signature.bind_partial(*args, **kwargs) if signature else None
    except TypeError:
        bound = None
    if bound is None:
        items = {f"{i}": a for i, a in enumerate(args)} | kwargs
    else:
        items = bound.arguments
    out: dict[str, Any] = {}
    for k, v in items.items():
        _flatten(f"mptrace.args.{k}", v, out, 0)
    return out


#: How deep, and how many items of, a dict or list argument become attributes.
_ARG_DEPTH = 3
_ARG_ITEMS = 32


def _flatten(name: str, value: Any, out: dict[str, Any], depth: int) -> None:
    """A dict argument as one attribute per item (``args.opts.token``), and a
    list that holds dicts by index, so redaction sees every key; a list of
    scalars, or contents deeper or longer than the limits, become one repr."""
    if depth < _ARG_DEPTH and isinstance(value, (dict, list, tuple)):
        try:
            if isinstance(value, dict):
                pairs: list[Any] | None = list(value.items())
            elif any(isinstance(v, (dict, list, tuple)) for v in value):
                pairs = list(enumerate(value))
            else:
                pairs = None
        except Exception:  # a container that will not say what it holds
            pairs = None
        if pairs is not None and len(pairs) <= _ARG_ITEMS:
            for key, item in pairs:
                _flatten(f"{name}.{safe_str(key)}", item, out, depth + 1)
            return
    out[name] = _attribute(value)


class _SpanSettings:
    __slots__ = ("attributes", "name", "record_args", "signature")

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None,
        attributes: Any,
        record_args: bool,
    ) -> None:
        self.name = name or getattr(func, "__qualname__", None) or safe_repr(func)
        self.attributes = {
            "code.function.name": qualname(func),
            **{k: _attribute(v) for k, v in (attributes or {}).items()},
        }
        self.record_args = record_args
        try:
            self.signature = inspect.signature(func) if record_args else None
        except (TypeError, ValueError):
            self.signature = None

    def start(self, tracer: Any, args: tuple, kwargs: dict, **extra: Any) -> Any:  # type: ignore[type-arg]
        attributes = dict(self.attributes)
        if self.record_args:
            attributes.update(_args_attributes(self.signature, args, kwargs))
        context = parent_context(extra.pop("context", None))
        arrived = _ipc.take_links()  # items handed to it on a queue or a pipe
        if arrived:
            extra["links"] = [*extra.get("links", ()), *arrived]
        return tracer.start_span(
            self.name, context=context, attributes=attributes, **extra
        )


def _wrap_sync(func: Callable[..., Any], settings: _SpanSettings) -> Callable[..., Any]:
    @functools.wraps(func)
    def traced_call(*args: Any, **kwargs: Any) -> Any:
        try:
            tracer = get_tracer()
            if tracer is None:
                return func(*args, **kwargs)
            span = settings.start(tracer, args, kwargs)
            return run_in_span(span, func, *args, **kwargs)
        except BaseException as exc:  # the function's: raised as if called bare
            _frames.hide(exc)
            raise

    return traced_call


def _wrap_coroutine(
    func: Callable[..., Any], settings: _SpanSettings
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def traced_call(*args: Any, **kwargs: Any) -> Any:
        tracer = get_tracer()
        if tracer is None:
            return await func(*args, **kwargs)
        span = settings.start(tracer, args, kwargs)
        # The span is current for each step of the coroutine: its own code only.
        coro = func(*args, **kwargs)
        result = await _Stepped(span, coro)
        end_span(span, None)
        return result

    return traced_call


class _Stepped:
    """Awaits *coro* with *span* current in each of its steps."""

    __slots__ = ("coro", "span")

    def __init__(self, span: Any, coro: Any) -> None:
        self.span = span
        self.coro = coro

    def __await__(self) -> Any:
        coro, span = self.coro, self.span
        step: Callable[[], Any] = functools.partial(coro.send, None)
        while True:
            try:
                item = step_in_span(span, step)
            except StopIteration as stop:
                return stop.value
            try:
                sent = yield item
            except BaseException as exc:
                step = functools.partial(coro.throw, exc)
            else:
                step = functools.partial(coro.send, sent)


def _wrap_generator(
    func: Callable[..., Any], settings: _SpanSettings
) -> Callable[..., Any]:
    @functools.wraps(func)
    def traced_call(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        tracer = get_tracer()
        if tracer is None:
            return (yield from func(*args, **kwargs))
        span = settings.start(tracer, args, kwargs)
        gen = func(*args, **kwargs)
        # The span is current only while the generator's own code runs, never
        # in the caller between two items.
        step: Callable[[], Any] = functools.partial(gen.send, None)
        while True:
            try:
                item = step_in_span(span, step)
            except StopIteration as stop:
                end_span(span, None)
                return stop.value
            try:
                sent = yield item
            except GeneratorExit:
                gen.close()
                end_span(span, None)
                raise
            except BaseException as exc:
                step = functools.partial(gen.throw, exc)
            else:
                step = functools.partial(gen.send, sent)

    return traced_call


def _wrap_async_generator(
    func: Callable[..., Any], settings: _SpanSettings
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def traced_call(*args: Any, **kwargs: Any) -> Any:
        tracer = get_tracer()
        span = (
            settings.start(tracer, args, kwargs) if tracer is not None else INVALID_SPAN
        )
        agen = func(*args, **kwargs)
        step: Callable[[], Any] = functools.partial(agen.asend, None)
        while True:
            try:
                item = await _Stepped(span, step())
            except StopAsyncIteration:
                end_span(span, None)
                return
            try:
                sent = yield item
            except GeneratorExit:
                await agen.aclose()
                end_span(span, None)
                raise
            except BaseException as exc:
                step = functools.partial(agen.athrow, exc)
            else:
                step = functools.partial(agen.asend, sent)

    return traced_call


@overload
def traced(func: F) -> F: ...
@overload
def traced(
    func: None = None,
    *,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    record_args: bool = False,
) -> Callable[[F], F]: ...


def traced(
    func: Any = None,
    *,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    record_args: bool = False,
) -> Any:
    """Make every call of the decorated function a span.

    The span is named after the function's qualified name unless *name* says
    otherwise, carries *attributes*, and records the arguments only when
    *record_args* is true (as ``mptrace.args.<name>``, each cut at 1 KiB).
    An exception is recorded on the span with its traceback, the span's status
    becomes ERROR, and the exception propagates unchanged. Functions,
    generator functions, coroutine functions and async generator functions
    are supported (a generator's span covers its whole iteration), and the
    decorated function pickles by reference, so it can be a pool task::

        @mptrace.traced
        def work(item): ...

        @mptrace.traced(name="load", attributes={"stage": 1}, record_args=True)
        async def load(path): ...

    Outside an mptrace session, it uses whatever OpenTelemetry provider is set,
    and with none it calls the function straight through.
    """
    if func is None:
        return lambda f: traced(
            f, name=name, attributes=attributes, record_args=record_args
        )
    if not callable(func):
        raise TypeError(
            f"@mptrace.traced decorates a function, generator function or coroutine "
            f"function, not {type(func).__name__}; for options use "
            "@mptrace.traced(name=..., attributes=..., record_args=...)."
        )
    settings = _SpanSettings(func, name, attributes, record_args)
    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(func, settings)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, settings)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, settings)
    return _wrap_sync(func, settings)
