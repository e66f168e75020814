"""The progress line of a running ``Pool.map`` (and starmap, imap, executor map).

It is drawn by the console exporter, in the listener: the listener is the
one process that writes the console's lines, so it alone can print them
above a line it keeps redrawing (two processes drawing on one terminal
tear each other's lines). What it knows, it learns from task spans: each
task of a map carries ``mptrace.task.items`` (the items it ran) and
``mptrace.map.items`` (the items of the whole map, 0 when unknown, as for
``imap`` over a generator), under the map's own span; the map's span ending
takes its line away. So a map shows from its first finished task on::

    tasks.square  ━━━━━━━━━━━╺━━━━━━━━━━  48/100 items  31.5/s  0:00:02 left  1 failed

Only on a terminal (the console checks); drawn with ``rich``, which is
imported when the first map shows.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, TextIO

#: Maps whose span ended, remembered so a late task does not bring one back.
ENDED_KEPT = 1000


class _Map:
    __slots__ = ("done", "failed", "first_ns", "name", "task_id", "total")

    def __init__(self, name: str, total: int, first_ns: int) -> None:
        self.name = name
        self.total = total
        self.first_ns = first_ns
        self.done = 0
        self.failed = 0
        self.task_id: Any = None

    def status(self) -> str:
        elapsed = max(time.time_ns() - self.first_ns, 1) / 1e9
        rate = self.done / elapsed
        done = f"{self.done}/{self.total}" if self.total else str(self.done)
        parts = [f"{done} items"]
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0:
            left = int((self.total - self.done) / rate)
            parts.append(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return "  ".join(parts)


class ProgressLine:
    """One line per running map, under the console's lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.maps: dict[str, _Map] = {}
        self.ended: OrderedDict[str, None] = OrderedDict()
        self.progress: Any = None  # rich's Progress while a map shows
        self.changed = False

    @property
    def active(self) -> bool:
        return self.progress is not None

    def on_span(self, span: dict[str, Any]) -> bool:
        """Count a finished task, or end a map; True when the line changed."""
        attributes = span.get("attributes") or {}
        role = attributes.get("mptrace.span")
        if role == "submit":
            return self._end(str(span.get("span_id")))
        total = attributes.get("mptrace.map.items")
        key = span.get("parent_span_id")
        if role != "task" or type(total) is not int or not key or key in self.ended:
            return False
        entry = self.maps.get(key)
        if entry is None:
            name = str(span.get("name", "")).removeprefix("task ")
            first = span.get("start_ns")
            entry = _Map(name, total, first if type(first) is int else time.time_ns())
            self.maps[key] = entry
        items = attributes.get("mptrace.task.items")
        entry.done += items if type(items) is int else 1
        entry.failed += span.get("status") == "error"
        if entry.total and entry.done >= entry.total:
            return self._end(key)
        self.changed = True
        return True

    def _end(self, key: str) -> bool:
        self.ended[key] = None
        if len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        entry = self.maps.pop(key, None)
        if entry is None:
            return False
        if self.progress is not None and entry.task_id is not None:
            self.progress.remove_task(entry.task_id)
        self.changed = True
        return True

    def refresh(self) -> bool:
        """Redraw (from the console's thread); True while there is a line."""
        if not self.maps:
            self.stop()
            return False
        if self.progress is None:
            self.progress = _start(self.stream)
        for entry in self.maps.values():
            if entry.task_id is None:
                entry.task_id = self.progress.add_task(
                    entry.name, total=entry.total or None, status=entry.status()
                )
            self.progress.update(
                entry.task_id, completed=entry.done, status=entry.status()
            )
        self.progress.refresh()
        self.changed = False
        return True

    def write(self, text: str) -> None:
        """Lines above the progress line."""
        from rich.text import Text

        self.progress.console.print(
            Text.from_ansi(text.rstrip("\n")),
            soft_wrap=True,
            highlight=False,
            markup=False,
            emoji=False,
        )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            for entry in self.maps.values():
                entry.task_id = None


def _start(stream: TextIO) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(file=stream, stderr=True),
        auto_refresh=False,
        transient=True,
    )
    progress.start()
    return progress
