"""The sink registry: every exporter name, its check and its build.

One table maps each exporter name to two functions: ``check`` runs in the
program at ``init()`` and turns what the user wrote into a
:class:`~mptrace.sinks.SinkSpec` (or raises ConfigurationError); ``build``
runs in the listener and makes the sink. ``init()``'s argument checking and
the listener both go through this table, so a name is valid in one exactly
when it is in the other. A name with a ``:`` whose left side is not in the
table is a user's ``package.module:Class``.

The entries' checks are light and imported here; what a build needs that is
heavy (the console's renderer, the OTLP exporters) loads inside the build.
The owner imports this module to check ``exporters=``; a child never does.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mptrace._listener import otel_env as _otel_env
from mptrace._listener.console import build_console, check_console
from mptrace._listener.jsonl import JsonlSink, cut_partial_line, memory_path
from mptrace._listener.rotate import build_jsonl, check_jsonl
from mptrace.exceptions import ConfigurationError
from mptrace.sinks import SinkSpec

if TYPE_CHECKING:
    from mptrace._schema.config import ListenerConfig

EXPORTER_HELP = (
    "Valid exporters are 'console' (with options such as "
    "'console?lifecycle=1&spans=1&level=warning'), 'jsonl:PATH' (with rotation "
    "options such as "
    "'jsonl:run.jsonl?max_bytes=10MB&backups=5&compress=gz'), 'memory', 'otlp' (gRPC), "
    "'otlp+http', 'jaeger' (OTLP over gRPC to Jaeger; spans only), and your own "
    "sink class as 'package.module:Class' or mptrace.sinks.sink(Class, ...); "
    "'otlp', 'otlp+http' and 'jaeger' take an optional endpoint after a colon, "
    "as in 'otlp:http://host:4317'."
)


@dataclass(frozen=True)
class SinkType:
    check: Callable[[str, str | None], SinkSpec]
    build: Callable[[SinkSpec, ListenerConfig], Any]


# -- user sinks ---------------------------------------------------------------


def _import(name: str) -> Any:
    module_name, _, attr = name.partition(":")
    if module_name == "__main__":
        raise ConfigurationError(
            f"The sink {name!r} is defined in __main__, which the listener process "
            "cannot import; define it in an importable module."
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"Unknown exporter {name!r}: {exc}. {EXPORTER_HELP}"
        ) from None
    if not callable(obj):
        raise ConfigurationError(f"The sink {name!r} is not a class or a callable.")
    return obj


def _check_user(spec: SinkSpec) -> SinkSpec:
    _import(spec.name)
    try:
        pickle.loads(pickle.dumps((spec.args, spec.kwargs)))
    except Exception as exc:
        raise ConfigurationError(
            f"The arguments of the sink {spec.name!r} cannot be sent to the listener "
            f"process ({exc}); use plain values."
        ) from None
    return spec


class GuardedSink:
    """A user's sink with every optional method filled in."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        self.name = name
        self.export = inner.export
        raw = getattr(inner, "export_raw", None)
        if callable(raw):
            self.export_raw = raw

    @property
    def dropped(self) -> int:
        value = getattr(self.inner, "dropped", 0)
        return value if isinstance(value, int) else 0

    def force_flush(self, timeout: float = 5.0) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout)) if callable(flush) else True

    def shutdown(self, timeout: float = 5.0) -> None:
        stop = getattr(self.inner, "shutdown", None)
        if callable(stop):
            stop(timeout)

    def summary(self, rows: list[dict[str, Any]]) -> None:
        summary = getattr(self.inner, "summary", None)
        if callable(summary):
            summary(rows)


def build_user(spec: SinkSpec, cfg: ListenerConfig) -> Any:
    """Build a user's sink; an OpenTelemetry exporter gets the SDK adapter."""
    obj = _import(spec.name)(*spec.args, **spec.kwargs)
    from mptrace._listener.otlp import sdk_sink_for

    adapted = sdk_sink_for(obj, spec.name, cfg)
    if adapted is not None:
        return adapted
    if not callable(getattr(obj, "export", None)):
        raise ConfigurationError(
            f"The sink {spec.name!r} has no export(events) method; a sink takes "
            "batches of events through export(), see mptrace.sinks."
        )
    return GuardedSink(obj, spec.name)


# -- the registry -------------------------------------------------------------


def _no_target(name: str, target: str | None) -> SinkSpec:
    if target:
        raise ConfigurationError(
            f"The exporter {name!r} takes no target, not {target!r}. {EXPORTER_HELP}"
        )
    return SinkSpec(name)


def _otlp(kind: str, logs: bool = True) -> Callable[[str, str | None], SinkSpec]:
    def check(name: str, target: str | None) -> SinkSpec:
        _otel_env.check()
        return SinkSpec(kind, target or None, logs=logs)

    return check


def _build_otlp(spec: SinkSpec, cfg: ListenerConfig) -> Any:
    from mptrace._listener.otlp import OtlpSink

    return OtlpSink(spec, cfg)


REGISTRY: dict[str, SinkType] = {
    "console": SinkType(check_console, build_console),
    "jsonl": SinkType(check_jsonl, build_jsonl),
    "memory": SinkType(_no_target, lambda spec, cfg: _memory_sink(cfg)),
    "otlp": SinkType(_otlp("otlp"), _build_otlp),
    "otlp+grpc": SinkType(_otlp("otlp+grpc"), _build_otlp),
    "otlp+http": SinkType(_otlp("otlp+http"), _build_otlp),
    "jaeger": SinkType(_otlp("otlp", logs=False), _build_otlp),
    "jaeger+http": SinkType(_otlp("otlp+http", logs=False), _build_otlp),
}


def check(spec: object) -> SinkSpec:
    """What ``init()`` makes of one item of ``exporters=``.

    Raises ConfigurationError, saying what is allowed.
    """
    if isinstance(spec, SinkSpec):
        return _check_user(spec) if spec.name not in REGISTRY else spec
    if isinstance(spec, type):
        return _check_user(SinkSpec(f"{spec.__module__}:{spec.__qualname__}"))
    if not isinstance(spec, str):
        raise ConfigurationError(
            f"An exporter is named by a string, not {type(spec).__name__}. "
            f"{EXPORTER_HELP}"
        )
    name, colon, target = spec.partition(":")
    if "?" in name:  # options straight after the name: 'console?spans=1'
        name, _, query = name.partition("?")
        target = f"?{query}{colon}{target}"
    key = name.strip().lower()
    entry = REGISTRY.get(key)
    if entry is not None:
        return entry.check(key, target)
    if target and name.replace(".", "").replace("_", "").isalnum():
        return _check_user(SinkSpec(spec))
    raise ConfigurationError(f"Unknown exporter {spec!r}. {EXPORTER_HELP}")


def _memory_sink(cfg: ListenerConfig) -> JsonlSink:
    path = memory_path(cfg.session_dir)
    if cfg.took_over:  # the listener before was killed, maybe mid-line
        cut_partial_line(path)
    return JsonlSink(path)


def build(spec: SinkSpec, cfg: ListenerConfig) -> Any:
    """Make the sink *spec* names, in the listener.

    Raises ConfigurationError, whatever the sink's constructor raised.
    """
    entry = REGISTRY.get(spec.name)
    try:
        return build_user(spec, cfg) if entry is None else entry.build(spec, cfg)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"The exporter {spec.name!r} could not be built: "
            f"{type(exc).__name__}: {exc}"
        ) from None
