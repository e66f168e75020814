"""Rendering events as console lines, with structlog's ``ConsoleRenderer``.

Each line names the process that wrote it, ``name[pid]``, in a colour of its
own that stays the same for the life of the process. Colours are used only
when the output is a terminal and ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any, Callable, TextIO

from structlog.dev import (
    Column,
    ConsoleRenderer,
    KeyValueColumnFormatter,
    LogLevelColumnFormatter,
)

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
    ("kind", "ts", "pid", "ppid", "seq", "process", "exc", "stack", "trace_id", "span_id")
)


def use_colours(stream: TextIO) -> bool:
    """Colours only on a terminal, and never when ``NO_COLOR`` is set."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def process_colour(pid: object) -> str:
    """The colour of process *pid*: the same every time it is asked."""
    key = str(pid).encode()
    return PROCESS_COLOURS[zlib.crc32(key) % len(PROCESS_COLOURS)]


class _ProcessColumn:
    """Formats the ``name[pid]`` column, coloured per process."""

    __slots__ = ("colours",)

    def __init__(self, colours: bool) -> None:
        self.colours = colours

    def __call__(self, key: str, value: object) -> str:
        name, pid = value  # type: ignore[misc]
        text = f"{name}[{pid}]"
        if self.colours:
            return f"{process_colour(pid)}{text}{RESET}"
        return text


def format_ts(ts_ns: object) -> str:
    try:
        seconds = int(ts_ns) / 1_000_000_000  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(ts_ns)
    whole = int(seconds)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole))
    return f"{stamp}.{int((seconds - whole) * 1000):03d}"


def _text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def make_console_renderer(colours: bool) -> Callable[[dict[str, Any]], str]:
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
        Column("process", _ProcessColumn(colours)),  # type: ignore[arg-type]
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
                value_repr=str,
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
            if key not in _HIDDEN and key not in view:
                view[key] = value
        if event.get("stack"):
            view["stack"] = event["stack"]
        exc = event.get("exc")
        if isinstance(exc, dict) and exc.get("traceback"):
            view["exception"] = exc["traceback"].rstrip("\n")
        return renderer(None, str(view["level"]), view)  # type: ignore[arg-type]

    return render


_fallback: Callable[[dict[str, Any]], str] | None = None


def render_fallback(event: dict[str, Any]) -> str:
    """Render *event* for this process's own stderr (the listener is gone)."""
    global _fallback
    if _fallback is None:
        import sys

        _fallback = make_console_renderer(use_colours(sys.stderr))
    return _fallback(event)
