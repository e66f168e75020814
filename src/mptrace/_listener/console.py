"""The console exporter: its options, checked at ``init()``, and its entry.

The sink itself (``console_sink``) runs in the listener, whose stderr is
the program's terminal::

    export(events) ─▶ what to show: the program's records at the console's
                      level; one line per child that ended badly (_endings);
                      lifecycle and span lines only when asked for
                   ─▶ _reorder: held WINDOW (150 ms), out in timestamp order
                   ─▶ stderr, above the progress line of a running map
                      (_progress, on a terminal only)
    summary(rows) ─▶ everything held, then the table of the run, short

Options follow the name after ``?``, as ``jsonl``'s do, or come from the
``MPTRACE_CONSOLE`` variable (the exporter's own options win)::

    console?lifecycle=1&spans=1&level=warning&progress=0&repeats=5

With ``repeats=SECONDS`` (``repeats=on``: 5 s), a record like one
shown within that time (same logger, level and message template, from any
process) is counted, not printed, and one line says how many there were
(``fold``). Off unless asked.

A ``created`` transition carries the time ``Process()`` was built but comes
at ``start()``, after lines stamped later: it is not a line of its own, the
``started`` line says how long before the start the process was built.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from mptrace._listener.fold import REPEATS_WINDOW
from mptrace.exceptions import ConfigurationError
from mptrace.sinks import SinkSpec

if TYPE_CHECKING:
    from mptrace._schema.config import ListenerConfig

ENV = "MPTRACE_CONSOLE"
OPTIONS_HELP = (
    "console takes options after '?', as in "
    "'console?lifecycle=1&spans=1&level=warning&progress=0': lifecycle, spans and "
    "progress are 1, true, yes, on or 0, false, no, off; level is DEBUG, INFO, "
    "WARNING, ERROR or CRITICAL (any case); repeats is the seconds a record "
    "folds the ones like it (on: 5, off or 0: every record printed, the default)."
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


# -- options ---------------------------------------------------------------------


def parse_options(query: str) -> dict[str, Any]:
    """The options of ``console?QUERY``, checked."""
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigurationError(f"Invalid options {query!r}. {OPTIONS_HELP}") from None
    for key, value in pairs:
        if key in options:
            msg = f"The option {key!r} is given twice. {OPTIONS_HELP}"
            raise ConfigurationError(msg)
        if key in ("lifecycle", "spans", "progress"):
            if value.lower() not in _TRUE + _FALSE:
                raise ConfigurationError(f"Invalid {key} {value!r}. {OPTIONS_HELP}")
            options[key] = value.lower() in _TRUE
        elif key == "level":
            if value.lower() not in LEVELS:
                raise ConfigurationError(f"Invalid level {value!r}. {OPTIONS_HELP}")
            options[key] = LEVELS[value.lower()]
        elif key == "repeats":
            options[key] = _seconds(value)
        else:
            raise ConfigurationError(f"Unknown option {key!r}. {OPTIONS_HELP}")
    return options


def _seconds(value: str) -> float:
    if value.lower() in ("on", "true", "yes"):
        return REPEATS_WINDOW
    if value.lower() in ("off", "false", "no"):
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigurationError(f"Invalid repeats {value!r}. {OPTIONS_HELP}")
    return seconds


def check_console(name: str, target: str | None) -> SinkSpec:
    """``console`` or ``console?OPTIONS``, with ``MPTRACE_CONSOLE`` beneath."""
    if target and not target.startswith("?"):
        raise ConfigurationError(
            f"The exporter 'console' takes no target, not {target!r}. {OPTIONS_HELP}"
        )
    options: dict[str, Any] = {}
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            options = parse_options(raw.lstrip("?"))
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"The environment variable {ENV}={raw!r}: {exc}"
            ) from None
    if target and target[1:]:
        options.update(parse_options(target[1:]))
    return SinkSpec("console", kwargs=options)


def build_console(spec: SinkSpec, cfg: ListenerConfig) -> Any:
    """In the listener: the sink, told of the run's JSON-lines file if any."""
    from mptrace._listener.console_sink import ConsoleSink

    files = [s.target for s in cfg.exporters if s.name == "jsonl" and s.target]
    report = _short_path(str(files[0])) if files else None
    return ConsoleSink(report_file=report, **spec.kwargs)


def _short_path(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
