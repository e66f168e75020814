"""Sinks the tests name in ``exporters=``: importable, so the listener can build them.

Each writes what it receives to a file the test reads afterwards, since a sink
lives in the listener process, not in the test's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class RecordingSink:
    """Appends every event, and the end-of-run table, to *path* as JSON lines."""

    def __init__(self, path: str, tag: str = "") -> None:
        self.path = path
        self.tag = tag
        self.flushed = 0

    def _write(self, obj: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")

    def export(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            self._write({"sink": self.tag, "event": event})

    def summary(self, rows: list[dict[str, Any]]) -> None:
        self._write({"sink": self.tag, "summary": rows})

    def shutdown(self, timeout: float = 5.0) -> None:
        self._write({"sink": self.tag, "shutdown": True})


class RaisingSink:
    """Fails on every batch."""

    def export(self, events: Sequence[dict[str, Any]]) -> None:
        raise RuntimeError("this sink always fails")


class BrokenSink:
    """Cannot even be built."""

    def __init__(self) -> None:
        raise OSError("no such device")


class FileSpanExporter(SpanExporter):
    """An OpenTelemetry SpanExporter that writes each span's name and ids to *path*."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as f:
            for span in spans:
                ctx = span.get_span_context()
                row = {
                    "name": span.name,
                    "span_id": format(ctx.span_id, "016x"),
                    "service": span.resource.attributes.get("service.name"),
                }
                f.write(json.dumps(row) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class AtExitSink:
    """Keeps every event and writes them all in an ``atexit`` handler: output
    that only the listener's interpreter, as it ends, writes."""

    def __init__(self, path: str) -> None:
        import atexit

        self.path = path
        self.events: list[dict[str, Any]] = []
        atexit.register(self._write)

    def export(self, events: Sequence[dict[str, Any]]) -> None:
        self.events.extend(events)

    def _write(self) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            for event in self.events:
                f.write(json.dumps(event) + "\n")
