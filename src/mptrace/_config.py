"""Checking what ``mptrace.init`` was given, once, before anything starts.

A mistake here raises :class:`~mptrace.ConfigurationError` at once with a
sentence that says what is allowed; nothing is started.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .exceptions import ConfigurationError

EXPORTER_HELP = (
    "Valid exporters are 'console', 'jsonl:PATH', 'otlp' (gRPC), 'otlp+http' "
    "and 'jaeger' (OTLP over gRPC to Jaeger); 'otlp', 'otlp+http' and 'jaeger' "
    "take an optional endpoint after a colon, as in 'otlp:http://host:4317'."
)
LEVEL_HELP = (
    "Valid levels are the names DEBUG, INFO, WARNING, ERROR and CRITICAL "
    "(any case) or a non-negative int."
)


@dataclass(frozen=True)
class ExporterSpec:
    """One exporter, by kind (``console``, ``jsonl``, ``otlp``, ``otlp+http``) and target."""

    kind: str
    target: str | None = None
    #: Whether log records go too; Jaeger takes traces only.
    logs: bool = True


def parse_exporter(spec: object) -> ExporterSpec:
    if not isinstance(spec, str):
        raise ConfigurationError(
            f"An exporter is named by a string, not {type(spec).__name__}. {EXPORTER_HELP}"
        )
    kind, _, target = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "console" and not target:
        return ExporterSpec("console")
    if kind == "jsonl":
        if not target:
            raise ConfigurationError(
                f"The exporter {spec!r} needs a file path, as in 'jsonl:run.jsonl'."
            )
        path = os.path.abspath(os.path.expanduser(target))
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise ConfigurationError(
                f"The folder of the JSON-lines file {target!r} does not exist; "
                "give a path in an existing folder."
            )
        if os.path.isdir(path):
            raise ConfigurationError(
                f"The JSON-lines path {target!r} is a folder; give a file path."
            )
        return ExporterSpec("jsonl", path)
    if kind in ("otlp", "otlp+grpc"):
        return ExporterSpec("otlp", target or None)
    if kind == "otlp+http":
        return ExporterSpec("otlp+http", target or None)
    if kind == "jaeger":
        return ExporterSpec("otlp", target or None, logs=False)
    if kind == "jaeger+http":
        return ExporterSpec("otlp+http", target or None, logs=False)
    raise ConfigurationError(f"Unknown exporter {spec!r}. {EXPORTER_HELP}")


def parse_exporters(exporters: object) -> tuple[ExporterSpec, ...]:
    if isinstance(exporters, str):
        exporters = (exporters,)
    if not isinstance(exporters, Iterable):
        raise ConfigurationError(
            "exporters= takes a string or a sequence of strings, such as "
            f"('console', 'jsonl:run.jsonl'). {EXPORTER_HELP}"
        )
    specs = tuple(parse_exporter(e) for e in exporters)
    paths = [s.target for s in specs if s.kind == "jsonl"]
    if len(paths) != len(set(paths)):
        raise ConfigurationError("Each JSON-lines file may be named only once in exporters=.")
    return specs


def parse_level(level: object) -> int:
    if isinstance(level, bool):
        raise ConfigurationError(f"Invalid level {level!r}. {LEVEL_HELP}")
    if isinstance(level, int):
        if level < 0:
            raise ConfigurationError(f"Invalid level {level!r}. {LEVEL_HELP}")
        return level
    if isinstance(level, str):
        value = logging.getLevelName(level.strip().upper())
        if isinstance(value, int):
            return value
    raise ConfigurationError(f"Invalid level {level!r}. {LEVEL_HELP}")


def parse_timeout(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= 86400
    ):
        raise ConfigurationError(
            f"{name}= takes a number of seconds greater than 0 and at most 86400, "
            f"not {value!r}."
        )
    return float(value)


def check_processors(processors: object) -> tuple[Callable[..., Any], ...]:
    if processors is None:
        return ()
    if callable(processors) or not isinstance(processors, Iterable):
        raise ConfigurationError(
            "processors= takes a sequence of structlog processors "
            "(callables taking logger, method_name, event_dict)."
        )
    procs = tuple(processors)
    for proc in procs:
        if not callable(proc):
            raise ConfigurationError(f"The processor {proc!r} is not callable.")
        module = getattr(proc, "__module__", None) or getattr(type(proc), "__module__", None)
        if module == "__main__":
            raise ConfigurationError(
                f"The processor {proc!r} is defined in __main__, which the listener "
                "process cannot import; define it in an importable module."
            )
        try:
            pickle.loads(pickle.dumps(proc))
        except Exception as exc:
            raise ConfigurationError(
                f"The processor {proc!r} cannot be sent to the listener process "
                f"({exc}); use a module-level function or a picklable instance."
            ) from None
    return procs


def default_service_name() -> str:
    name = os.environ.get("OTEL_SERVICE_NAME")
    if name:
        return name
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.splitext(os.path.basename(path))[0]
    return "python"


@dataclass
class ListenerConfig:
    """What the listener process needs; pickled to it through its stdin."""

    service_name: str
    exporters: tuple[ExporterSpec, ...]
    processors: tuple[Callable[..., Any], ...]
    owner_pid: int
    shutdown_timeout: float
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildConfig:
    """What a participating child needs to join the session; travels with it."""

    address: str
    authkey: bytes
    level: int
    block_timeout: float
    structlog: bool
    session_id: str
    redact_keys: tuple[str, ...] | None = None
    tracing: bool = True
    service_name: str = "python"
    sample_interval: float = 1.0

    def __repr__(self) -> str:  # never print the key
        return f"ChildConfig(address={self.address!r}, session_id={self.session_id!r})"
