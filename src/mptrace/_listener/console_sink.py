"""The console sink, in the listener: what to show, in what order, where.

See ``console`` for the options and the picture; ``endings`` for the line
a bad end gets, ``fold`` for repeated records, ``reorder`` for the window,
``progress`` for the line of a running map.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from mptrace._listener.endings import Endings
from mptrace._listener.fold import Repeats
from mptrace._listener.reorder import WINDOW, Reorder
from mptrace._render.palette import Palette
from mptrace._render.term import use_colours
from mptrace._schema.events import LEVEL_NUMBERS, Event

_RANKS = LEVEL_NUMBERS
#: Rows of the end-of-run table; past it, failed processes first, then a count.
TABLE_ROWS = 10


# -- the sink --------------------------------------------------------------------


class ConsoleSink:
    """Renders events on the listener's stderr (the program's terminal).

    Quiet by default: the program's own records, one line for each child
    that ended badly, and at the end the table of the run. *lifecycle* and
    *spans* add a line per transition and per finished span; *level* is the
    console's own minimum. A log event the program's own logging already
    printed (``echoed``) is not printed again.
    """

    name = "console"
    dropped = 0

    def __init__(
        self,
        stream: TextIO | None = None,
        lifecycle: bool = False,
        spans: bool = False,
        level: int = 0,
        progress: bool = True,
        report_file: str | None = None,
        window: float | None = None,
        repeats: float = 0.0,
    ) -> None:
        from mptrace._render import lines as _render

        self.stream = stream or sys.stderr
        self.colours = use_colours(self.stream)
        self.lifecycle = lifecycle
        self.spans = spans
        self.level = level
        self.palette = Palette()
        self.render = _render.make_console_renderer(self.colours, self.palette)
        self.render_r = _render
        self.endings = Endings(report_file)
        self.created: dict[tuple[Any, Any], Any] = {}
        self.progress: Any = None
        if progress and _is_terminal(self.stream):
            from mptrace._listener.progress import ProgressLine

            self.progress = ProgressLine(self.stream)
        self.repeats = Repeats(repeats, self._repeated) if repeats > 0 else None
        tick = self._tick if self.progress is not None or self.repeats else None
        self.order = Reorder(
            self._emit, WINDOW if window is None else window, tick=tick
        )

    # -- what to show ----------------------------------------------------------

    def export(self, events: Sequence[Event]) -> None:
        for event in events:
            kind = event.get("kind", "log")
            if kind == "log":
                if not event.get("echoed") and _rank(event) >= self.level:
                    if self.repeats is None or self._shown(event):
                        self._hold(event.get("ts"), event)
            elif kind == "span":
                self._span(event)
            elif kind == "lifecycle":
                self._lifecycle(event)

    def _shown(self, event: Event) -> bool:
        """Not one like a record shown within the window (``fold``)."""
        assert self.repeats is not None
        with self.order.lock:  # the console's thread ends windows
            show = self.repeats.check(event)
            if not show and not self.order.ticking:
                self.order.wake()  # ticks until the window ends and is said
        return show

    def _repeated(self, line: Event) -> None:
        self._hold(line.get("ts"), line)

    def _tick(self) -> bool:
        """The console thread's tick: the progress line, and windows that end."""
        busy = self.progress.refresh() if self.progress is not None else False
        if self.repeats is not None and self.repeats.expire():
            busy = True
        return bool(busy)

    def _end_repeats(self) -> None:
        if self.repeats is not None:
            with self.order.lock:
                self.repeats.flush()

    def _span(self, event: Event) -> None:
        if self.progress is not None:
            with self.order.lock:  # the console's thread draws from the same maps
                changed = self.progress.on_span(event)
            if changed:
                self.order.wake()
        if self.spans:
            level, text = self.render_r.span_line(event)
            self._line(event, event.get("end_ns"), level, text)

    def _lifecycle(self, event: Event) -> None:
        transition = event.get("transition")
        if transition == "created":
            if len(self.created) > 10_000:
                self.created.clear()
            key = (event.get("pid"), event.get("target_name"))
            self.created[key] = event.get("ts")
            return
        self.endings.note(event)
        if transition == "finished" and event.get("outcome") == "raised":
            self.palette.fail(event.get("target_pid"))
        if transition == "exited":
            bad = self.endings.bad_end(event)
            if bad is not None:
                pid = event.get("target_pid")
                if bad[0] == "error":
                    self.palette.fail(pid)
                view = {**event, "process": event.get("target_name"), "pid": pid}
                self._line(view, event.get("ts"), *bad)
                return
        if not self.lifecycle:
            return
        level, text = self.render_r.lifecycle_line(event, stopped=True)
        if transition == "started":
            built = self.created.pop((event.get("pid"), event.get("target_name")), None)
            if built is not None:
                ago = self.render_r.format_duration(built, event.get("ts"))
                text += f", built {ago} before"
        self._line(event, event.get("ts"), level, text)

    def _line(self, event: Event, ts: Any, level: str, text: str) -> None:
        if LEVEL_NUMBERS.get(level, 0) >= self.level:
            view = {
                "ts": ts,
                "level": level,
                "process": event.get("process", "?"),
                "pid": event.get("pid", "?"),
                "event": text,
            }
            self._hold(ts, view)

    def _hold(self, ts: Any, event: Event) -> None:
        self.order.add(ts if type(ts) is int else time.time_ns(), event)

    # -- writing ---------------------------------------------------------------

    def _emit(self, events: list[Event]) -> None:
        """Under the reorder lock: render (a process marked failed by now
        shows its mark) and write."""
        text = "".join(self.render(e) + "\n" for e in events)
        if self.progress is not None and self.progress.active:
            self.progress.write(text)
        else:
            self._write(text)

    def summary(self, rows: list[dict[str, Any]]) -> None:
        """Everything held, then the run's table (``_render.lines.format_summary``)."""
        self._end_repeats()
        self.order.flush()
        self._stop_progress()
        if rows:
            asked = self.endings.asked
            rows = [{**r, "asked": True} if r.get("pid") in asked else r for r in rows]
            for row in rows:
                if row.get("pid") is not None and _failed(row):
                    self.palette.fail(row["pid"])
            table = self.render_r.format_summary(
                shorten(rows), self.colours, self.palette
            )
            self._write(table + "\n")

    def _write(self, text: str) -> None:
        """Whole lines, in writes the program's own cannot land inside.

        The program writes to the same terminal or pipe. A write of up to
        PIPE_BUF bytes to a pipe is never interleaved with another's; a
        longer one is, wherever the pipe fills, and the stream's buffer
        would cut lines at its own size. So the text goes out as whole
        lines, each write at most PIPE_BUF where a line fits.
        """
        fd = _fileno(self.stream)
        if fd is None:
            self._write_text(text)
            return
        self.stream.flush()  # what the progress line left in it goes first
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        data = text.encode(encoding, "backslashreplace")
        for chunk in whole_lines(data, select.PIPE_BUF):
            _write_all(fd, chunk)

    def _write_text(self, text: str) -> None:
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            data = text.encode("utf-8", "backslashreplace")
            self.stream.flush()
            self.stream.buffer.write(data)

    def tick(self) -> None:
        """The listener's idle tick: what was written reaches the terminal."""
        with self.order.lock:
            self._flush_stream()

    def _flush_stream(self) -> bool:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            return False
        return True

    def force_flush(self, timeout: float = 5.0) -> bool:
        self.order.flush()
        with self.order.lock:
            return self._flush_stream()

    def _stop_progress(self) -> None:
        if self.progress is not None:
            with self.order.lock:
                self.progress.stop()

    def shutdown(self, timeout: float = 5.0) -> None:
        self._end_repeats()
        self.order.close(min(timeout, 1.0))
        self._stop_progress()
        self._flush_stream()


def whole_lines(data: bytes, limit: int) -> Iterator[bytes]:
    """*data* in pieces that end at a line's end, each at most *limit* bytes
    unless one line alone is longer."""
    start, size = 0, len(data)
    while start < size:
        end = start + limit
        if end >= size:
            yield data[start:]
            return
        cut = data.rfind(b"\n", start, end) + 1
        if cut <= start:  # one line longer than limit: whole, in one write
            cut = data.find(b"\n", end) + 1 or size
        yield data[start:cut]
        start = cut


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a non-blocking stderr: wait for room
            select.select([], [fd], [], 1.0)


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation
        return None


def _rank(event: Event) -> int:
    return _RANKS.get(str(event.get("level", "info")).lower(), 0)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def shorten(rows: list[dict[str, Any]], limit: int = TABLE_ROWS) -> list[Any]:
    """At most *limit* rows: processes that failed or logged errors first, the
    rest counted in one row."""
    if len(rows) <= limit:
        return rows
    first = [r for r in rows if _failed(r) or r.get("errors")]
    kept = (first + [r for r in rows if r not in first])[: limit - 1]
    kept.sort(key=lambda r: (r.get("pid") is None, r.get("pid") or 0))
    rest = [r for r in rows if r not in kept]
    exits: dict[str, int] = {}
    for row in rest:
        for code, n in _exits(row).items():
            exits[code] = exits.get(code, 0) + n
    count = sum(sum(_exits(r).values()) for r in rest)
    kept.append(
        {
            "pid": None,
            "name": f"{count} more",
            "exit": ", ".join(f"{code} ×{n}" for code, n in sorted(exits.items())),
            "duration_s": None,
            "cpu_s": None,
            "peak_rss_bytes": None,
            "errors": sum(r.get("errors") or 0 for r in rest),
        }
    )
    return kept


def _failed(row: dict[str, Any]) -> bool:
    """Ended badly: an exit other than 0 (or a stop the program asked for)."""
    return str(row.get("exit")) not in ("0", "running", "None") and not row.get("asked")


def _exits(row: dict[str, Any]) -> dict[str, int]:
    """Exit -> count of one row (the table's own 'N more' row counts many)."""
    if row.get("pid") is None and str(row.get("name", "")).endswith(" more"):
        out = {}
        for part in str(row.get("exit", "")).split(", "):
            code, _, n = part.partition(" ×")
            if n.isdigit():
                out[code] = int(n)
        return out
    return {str(row.get("exit")): 1}
