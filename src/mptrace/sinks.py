"""Sinks: where the listener sends events, and how to add your own.

A sink lives in the listener process. It is built there from what
``mptrace.init(exporters=[...])`` names, and it receives every event of the
session as a plain dict (docs/jsonl-schema.md), in batches. The seam is
OpenTelemetry's ``SpanExporter`` in spirit, a handful of methods::

    class MySink:
        def export(self, events):            # a list of event dicts
            ...
        def force_flush(self, timeout=5.0):  # optional: True when all is out
            return True
        def shutdown(self, timeout=5.0):     # optional: called once, last
            ...
        dropped = 0                          # optional: events it could not deliver

A sink may also take events as the JSON lines they arrived as
(``export_raw(lines)``, each a ``bytes`` object without the newline), which
spares the listener from decoding them; ``summary(rows)`` gets the table of
every process at the end of the run.

Name a sink class in ``exporters=`` by ``"package.module:Class"``, or with
arguments through :func:`sink`::

    kafka = mptrace.sinks.sink("mypkg.sinks:Kafka", topic="runs")
    mptrace.init(exporters=["console", kafka])

The module must be importable by the listener (not ``__main__``) and the
arguments picklable. An OpenTelemetry ``SpanExporter`` or ``LogExporter``
class named the same way works as a sink: it gets the spans (or log records)
as SDK objects, in batches, from a thread of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["RawSink", "Sink", "SinkSpec", "sink"]


@runtime_checkable
class Sink(Protocol):
    """What the listener calls on a sink (only ``export`` is required)."""

    def export(self, events: Sequence[dict[str, Any]]) -> None:
        """Take a batch of events; must not block for long."""


@runtime_checkable
class RawSink(Protocol):
    """A sink that takes events as encoded JSON lines."""

    def export_raw(self, lines: Sequence[bytes]) -> None:
        """Take a batch of JSON lines (no trailing newline)."""


@dataclass(frozen=True)
class SinkSpec:
    """One sink as ``init()`` checked it: a name, a target and arguments.

    *name* is a built-in sink's name (``console``, ``jsonl``, ``otlp``, ...)
    or ``package.module:Class``; it pickles, so it can travel to the listener.
    """

    name: str
    target: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Whether log records go too; Jaeger takes traces only.
    logs: bool = True

    @property
    def kind(self) -> str:
        """The built-in kind (``otlp`` for ``jaeger``), or ``user``."""
        return self.name if ":" not in self.name else "user"


def sink(cls: str | type, /, *args: Any, **kwargs: Any) -> SinkSpec:
    """Name your own sink class, with the arguments the listener builds it with.

    *cls* is ``"package.module:Class"`` or the class itself (defined in an
    importable module). Checked by ``init()``: a class that cannot be
    imported, or arguments that cannot be pickled, raise ConfigurationError.
    """
    if isinstance(cls, type):
        cls = f"{cls.__module__}:{cls.__qualname__}"
    return SinkSpec(str(cls), None, tuple(args), dict(kwargs))
