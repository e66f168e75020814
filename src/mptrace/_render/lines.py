"""Rendering events as console lines, with structlog's ``ConsoleRenderer``.

Each line names the process that wrote it, ``name[pid]``, in a colour of its
own that stays the same for the life of the process: from a ``Palette``
(colours by order of appearance, a mark on a process that failed), else one
hashed from the pid. Colours follow ``term.use_colours``.

Logs render as they were written; a finished span and a lifecycle transition
render as one line each, in the same columns::

    10:00:00.123 [info    ] worker-1[123] span task mymod.work 12.3 ms ok
    10:00:00.125 [error   ] MainProcess[100] lifecycle worker-1[123] exited by SIGKILL

and at shutdown :func:`format_summary` makes the table of every process.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

from structlog.dev import (
    Column,
    ConsoleRenderer,
    KeyValueColumnFormatter,
    LogLevelColumnFormatter,
)

from mptrace._render.cut import cut
from mptrace._render.palette import FAIL_MARK, Palette
from mptrace._render.term import use_colours
from mptrace._schema import events as _events

RESET = "\x1b[0m"
DIM = "\x1b[2m"
BRIGHT = "\x1b[1m"
# Colours that read on dark and light terminals alike.
PROCESS_COLOURS = tuple(
    f"\x1b[{code}m" for code in (32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
)
LEVEL_STYLES = {
    "critical": "\x1b[31;1m",
    "error": "\x1b[31m",
    "warning": "\x1b[33m",
    "info": "\x1b[32m",
    "debug": "\x1b[34m",
    "notset": DIM,
}

# What the console shows as columns of its own, or not at all.
_HIDDEN = frozenset(
    (
        *"kind ts pid ppid seq run process exc stack trace_id span_id".split(),
        *("echoed", "template"),
    )
)


def process_colour(pid: object) -> str:
    """The colour of process *pid*: the same every time it is asked."""
    key = str(pid).encode()
    return PROCESS_COLOURS[zlib.crc32(key) % len(PROCESS_COLOURS)]


class _ProcessColumn:
    """Formats the ``name[pid]`` column, coloured per process."""

    __slots__ = ("colours", "palette")

    def __init__(self, colours: bool, palette: Palette | None = None) -> None:
        self.colours = colours
        self.palette = palette

    def __call__(self, key: str, value: object) -> str:
        name, pid = value if isinstance(value, tuple) else ("?", value)
        text = f"{name}[{pid}]"
        if not self.colours:
            return text
        if self.palette is not None:
            return self.palette.paint(pid, text)
        return f"{process_colour(pid)}{text}{RESET}"


def format_ts(ts_ns: object) -> str:
    try:
        seconds = int(ts_ns) / 1_000_000_000  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(ts_ns)
    whole = int(seconds)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole))
    return f"{stamp}.{int((seconds - whole) * 1000):03d}"


def _text(value: object) -> str:
    return cut(value if isinstance(value, str) else repr(value))


def _str(value: object) -> str:
    return cut(str(value))


def make_console_renderer(
    colours: bool, palette: Palette | None = None
) -> Callable[[dict[str, Any]], str]:
    """Return a function that renders one plain event as one console entry."""
    reset = RESET if colours else ""
    styles = LEVEL_STYLES if colours else {name: "" for name in LEVEL_STYLES}
    columns = [
        Column(
            "timestamp",
            KeyValueColumnFormatter(
                key_style=None,
                value_style=DIM if colours else "",
                reset_style=reset,
                value_repr=str,
            ),
        ),
        Column("level", LogLevelColumnFormatter(styles, reset_style=reset)),
        Column("process", _ProcessColumn(colours, palette)),
        Column(
            "logger",
            KeyValueColumnFormatter(
                key_style=None,
                value_style=DIM if colours else "",
                reset_style=reset,
                value_repr=str,
                postfix=":",
            ),
        ),
        Column(
            "event",
            KeyValueColumnFormatter(
                key_style=None,
                value_style=BRIGHT if colours else "",
                reset_style=reset,
                value_repr=_str,
                width=30,
            ),
        ),
        Column(
            "",
            KeyValueColumnFormatter(
                key_style="\x1b[36m" if colours else "",
                value_style="\x1b[35m" if colours else "",
                reset_style=reset,
                value_repr=_text,
            ),
        ),
    ]
    renderer = ConsoleRenderer(columns=columns, sort_keys=False)

    def render(event: dict[str, Any]) -> str:
        view = {
            "timestamp": format_ts(event.get("ts")),
            "level": str(event.get("level", "")),
            "process": (event.get("process", "?"), event.get("pid", "?")),
        }
        if event.get("logger"):
            view["logger"] = event["logger"]
        view["event"] = event.get("event", "")
        for key, value in event.items():
            if key not in _HIDDEN and key not in view and key != "logger":
                view[key] = value
        if event.get("stack"):
            view["stack"] = cut(str(event["stack"]))
        exc = event.get("exc")
        if isinstance(exc, dict) and exc.get("traceback"):
            view["exception"] = cut(str(exc["traceback"]).rstrip("\n"))
        return renderer(None, str(view["level"]), view)

    return render


_fallback: dict[str, Callable[[dict[str, Any]], str | None]] = {}


def render_fallback(event: dict[str, Any]) -> str | None:
    """Render *event* for this process's own stderr (the listener is gone).

    Logs, spans and lifecycle changes get the very lines the console exporter
    would have printed.
    """
    if not _fallback:
        colours = use_colours(sys.stderr)
        _fallback["log"] = make_console_renderer(colours)
        _fallback["span"] = make_span_renderer(colours)
        _fallback["lifecycle"] = LifecycleRenderer(colours)
    render = _fallback.get(event.get("kind", "log"), _fallback["log"])
    return render(event)


# -- spans and lifecycle transitions -------------------------------------------

Render = Callable[[dict[str, Any]], str]


def _line_view(
    event: dict[str, Any], ts: object, level: str, text: str
) -> dict[str, Any]:
    """What the log renderer needs to draw one line for *event*'s process."""
    return {
        "ts": ts if ts is not None else time.time_ns(),
        "level": level,
        "process": event.get("process", "?"),
        "pid": event.get("pid", "?"),
        "event": text,
    }


def format_duration(start_ns: object, end_ns: object) -> str:
    """``12.3 ms`` below a second, ``4.56 s`` from there, ``?`` when unknown."""
    if type(start_ns) is not int or type(end_ns) is not int:
        return "?"
    ms = (end_ns - start_ns) / 1_000_000
    return f"{ms:.1f} ms" if abs(ms) < 1000 else f"{ms / 1000:.2f} s"


def span_line(event: dict[str, Any]) -> tuple[str, str]:
    """(level, text) of a finished span: ``span NAME DURATION ok|error: why``."""
    name = event.get("name", "?")
    if event.get("mptrace_error"):
        return "warning", f"span {name} not recorded: {event['mptrace_error']}"
    duration = format_duration(event.get("start_ns"), event.get("end_ns"))
    if event.get("status") == "error":
        why = event.get("status_message")
        return "error", f"span {name} {duration} error" + (f": {why}" if why else "")
    return "info", f"span {name} {duration} ok"


def make_span_renderer(colours: bool, palette: Palette | None = None) -> Render:
    """Return a function that renders one ``span`` event as one console line."""
    render = make_console_renderer(colours, palette)

    def render_span(event: dict[str, Any]) -> str:
        level, text = span_line(event)
        return render(_line_view(event, event.get("end_ns"), level, text))

    return render_span


#: Deaths that ``terminate()`` or ``kill()`` asked for (as the process span says too).
_ASKED_FOR = frozenset(("SIGTERM", "SIGKILL"))


def signal_name(event: dict[str, Any]) -> str | None:
    """The signal that ended the process, from ``signal`` or a negative exit code."""
    name = event.get("signal")
    return str(name) if name else _events.signal_name(event.get("exitcode"))


def _target(event: dict[str, Any]) -> str:
    name = event.get("target_name", "?")
    pid = event.get("target_pid")
    return f"{name}[{pid}]" if pid is not None else str(name)


def lifecycle_line(event: dict[str, Any], stopped: bool = False) -> tuple[str, str]:
    """(level, text) of one transition of a child process.

    *stopped*: ``terminate()`` or ``kill()`` was called on the child, so dying
    by SIGTERM or SIGKILL is what was asked, not an error. A child that
    raised is a warning here: its traceback was logged as an error already.
    """
    transition = str(event.get("transition", "?"))
    text = f"lifecycle {_target(event)} {transition}"
    if transition in ("created", "started") and event.get("start_method"):
        return "info", f"{text} ({event['start_method']})"
    if transition == "terminated":
        return "info", f"{text} by {event.get('how', '?')}()"
    if transition == "finished":
        if event.get("outcome") == "raised":
            exc = event.get("exc")
            exc = exc if isinstance(exc, dict) else {}
            why = f"{exc.get('type', '?')}: {exc.get('message', '')}"
            return "warning", f"{text} raised {why}"
        return "info", f"{text} {event.get('outcome', '')}".rstrip()
    if transition == "exited":
        died_by = signal_name(event)
        if died_by:
            asked = stopped and died_by in _ASKED_FOR
            return ("info" if asked else "error"), f"{text} by {died_by}"
        code = event.get("exitcode")
        if code is None:
            return "warning", f"{text}, exit code unknown"
        return ("info" if code == 0 else "error"), f"{text} code {code}"
    return "info", text


class LifecycleRenderer:
    """Renders ``lifecycle`` events, remembering which children were asked to stop.

    A child that dies by SIGTERM or SIGKILL after ``terminate()`` or
    ``kill()`` exited as asked, at level info; any other death by a signal
    and any non-zero exit code is an error. (A crash's stack is not repeated
    here: the parent logs it as an error of its own.)
    """

    def __init__(self, colours: bool, palette: Palette | None = None) -> None:
        self.render = make_console_renderer(colours, palette)
        self.stopped: set[object] = set()

    def __call__(self, event: dict[str, Any]) -> str:
        target = event.get("target_pid")
        transition = event.get("transition")
        if transition == "terminated":
            if len(self.stopped) > 10_000:
                self.stopped.clear()
            self.stopped.add(target)
        stopped = transition == "exited" and target in self.stopped
        if stopped:
            self.stopped.discard(target)
        level, text = lifecycle_line(event, stopped)
        return self.render(_line_view(event, event.get("ts"), level, text))


# -- the summary table ---------------------------------------------------------

#: (title, row key, format, right-aligned) of each column.
_COLUMNS: tuple[tuple[str, str, Callable[[Any], str], bool], ...] = (
    ("pid", "pid", str, True),
    ("name", "name", str, False),
    ("exit", "exit", str, False),
    ("duration (s)", "duration_s", lambda v: f"{v:.2f}", True),
    ("CPU (s)", "cpu_s", lambda v: f"{v:.2f}", True),
    ("peak RSS (MiB)", "peak_rss_bytes", lambda v: f"{v / 1048576:.1f}", True),
    ("errors", "errors", str, True),
)


def _cell(row: dict[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    try:
        return fmt(value)
    except (TypeError, ValueError):
        return str(value)


def _row_failed(row: dict[str, Any], key: str) -> bool:
    """The cell shows a problem: an exit other than 0/running (or a stop the
    program asked for, ``asked``), or errors."""
    value = row.get(key)
    if key == "exit":
        ok = ("0", "running")
        return value is not None and str(value) not in ok and not row.get("asked")
    if key == "errors":
        return isinstance(value, int) and value > 0
    return False


def format_summary(
    rows: list[dict[str, Any]], colours: bool, palette: Palette | None = None
) -> str:
    """The table of every process: pid, name, exit, duration, CPU, peak RSS, errors.

    A missing value shows as ``-``. With colours, names wear their process's
    colour (the *palette*'s, with its mark on a failed one) and failed exits
    and error counts are red.
    """
    cells = [[_cell(row, key, fmt) for _, key, fmt, _ in _COLUMNS] for row in rows]
    widths = [
        max([len(title)] + [len(line[i]) for line in cells])
        for i, (title, *_) in enumerate(_COLUMNS)
    ]

    def join(texts: list[str], row: dict[str, Any] | None) -> str:
        out = []
        for i, (text, (_, key, _, right)) in enumerate(
            zip(texts, _COLUMNS, strict=True)
        ):
            padded = text.rjust(widths[i]) if right else text.ljust(widths[i])
            if colours and row is not None:
                if key == "name":
                    pid = row.get("pid")
                    colour = palette.colour(pid) if palette else process_colour(pid)
                    padded = f"{colour}{padded}{RESET}"
                elif _row_failed(row, key):
                    padded = f"{LEVEL_STYLES['error']}{padded}{RESET}"
            out.append(padded)
        return "  ".join(out).rstrip()

    header = join([title for title, *_ in _COLUMNS], None)
    if colours:
        header = f"{BRIGHT}{header}{RESET}"
    lines = ["mptrace: processes", "  " + header]
    for line, row in zip(cells, rows, strict=True):
        failed = colours and palette is not None and palette.has_failed(row.get("pid"))
        lines.append((FAIL_MARK if failed else "  ") + join(line, row))
    return "\n".join(lines)
