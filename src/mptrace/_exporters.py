"""Where the listener sends events: the console and JSON-lines files.

Each exporter has ``export(event)``, ``flush()`` and ``shutdown()``; the
listener calls ``flush`` whenever it runs out of input, so a file is never
more than one idle moment behind. OTLP exporters live in ``_otlp.py``.
An exporter with ``summary(rows)`` (the console) is given the table of every
process right before ``shutdown()``.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TextIO

from ._render import (
    LifecycleRenderer,
    format_summary,
    make_console_renderer,
    make_span_renderer,
    use_colours,
)
from ._wire import to_json


class ConsoleExporter:
    """Renders events on the listener's stderr (the program's terminal).

    A log event as it was written, a finished span and a lifecycle transition
    as one line each, and at shutdown the table of every process.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.colours = use_colours(self.stream)
        self.render = make_console_renderer(self.colours)
        self.renderers: dict[str, Callable[[dict[str, Any]], str | None]] = {
            "log": self.render,
            "span": make_span_renderer(self.colours),
            "lifecycle": LifecycleRenderer(self.colours),
        }

    def export(self, event: dict[str, Any]) -> None:
        render = self.renderers.get(event.get("kind", "log"))
        if render is None:
            return
        line = render(event)
        if line is not None:
            self._write(line + "\n")

    def summary(self, rows: list[dict[str, Any]]) -> None:
        """Print the table of every process (see :func:`format_summary`)."""
        if rows:
            self._write(format_summary(rows, self.colours) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            data = text.encode("utf-8", "backslashreplace")
            self.stream.flush()
            self.stream.buffer.write(data)  # type: ignore[attr-defined]

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def shutdown(self) -> None:
        self.flush()


class JsonlExporter:
    """Appends one JSON object per event to a file.

    Strings with lone surrogates are written with ``\\udcXX`` escapes, which
    JSON reads back as the same string: the file is always valid UTF-8.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = open(path, "ab", buffering=1024 * 1024)
        self._write = self.file.write

    def export(self, event: dict[str, Any]) -> None:
        self._write(to_json(event) + b"\n")

    def export_json(self, body: bytes | memoryview) -> None:
        """Write an event that arrived already encoded, as it is."""
        self._write(body)
        self._write(b"\n")

    def flush(self) -> None:
        self.file.flush()

    def shutdown(self) -> None:
        if not self.file.closed:
            self.file.flush()
            self.file.close()
