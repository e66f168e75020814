"""Checking what ``mptrace.init`` was given, once, before anything starts.

A mistake here raises :class:`~mptrace.ConfigurationError` at once with a
sentence that says what is allowed; nothing is started.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Iterable
from typing import Any

from mptrace._listener.registry import EXPORTER_HELP
from mptrace._listener.registry import check as check_sink
from mptrace.exceptions import ConfigurationError
from mptrace.processors import DEFAULT_SECRET_KEYS
from mptrace.sinks import SinkSpec

LEVEL_HELP = (
    "Valid levels are the names DEBUG, INFO, WARNING, ERROR and CRITICAL "
    "(any case) or a non-negative int."
)


def parse_exporters(exporters: object) -> tuple[SinkSpec, ...]:
    """Each item of ``exporters=`` checked through the sink registry."""
    if isinstance(exporters, (str, SinkSpec)):
        exporters = (exporters,)
    if not isinstance(exporters, Iterable):
        raise ConfigurationError(
            "exporters= takes a string or a sequence of strings, such as "
            f"('console', 'jsonl:run.jsonl'). {EXPORTER_HELP}"
        )
    specs = tuple(check_sink(e) for e in exporters)
    paths = [s.target for s in specs if s.name == "jsonl"]
    if len(paths) != len(set(paths)):
        raise ConfigurationError(
            "Each JSON-lines file may be named only once in exporters=."
        )
    return specs


def parse_level(level: object) -> int:
    if isinstance(level, bool):
        raise ConfigurationError(f"Invalid level {level!r}. {LEVEL_HELP}")
    if isinstance(level, int):
        if level < 0:
            raise ConfigurationError(f"Invalid level {level!r}. {LEVEL_HELP}")
        return level
    if isinstance(level, str):
        import logging  # here, not at the top: the listener needs no logging

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
        module = getattr(proc, "__module__", None) or getattr(
            type(proc), "__module__", None
        )
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
    if isinstance(path, str):
        return os.path.splitext(os.path.basename(path))[0]
    return "python"


def redact_keys(redact: object) -> tuple[str, ...] | None:
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
