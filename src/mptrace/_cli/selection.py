"""What ``mptrace logs`` selects: levels, kinds, times, runs, processes, text.

:class:`Selection` holds the options and decides for one decoded event; its
:meth:`Selection.prefilter` gives the reader a test on raw lines that drops
only lines that cannot match, which is what makes a level filter fast.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from typing import Any

import click

from mptrace._cli.reader import Event, event_time, last_run, make_prefilter
from mptrace._schema.events import LEVEL_NUMBERS

#: Levels by rank; a record of a level not named here passes any ``--level``.
LEVELS = LEVEL_NUMBERS
KINDS = ("log", "span", "lifecycle")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


class When(click.ParamType):  # type: ignore[type-arg] # generic in click 8.2+ only
    """A time: ISO, or a time ago such as ``10m``; as ns since the epoch."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        ago = _AGO.fullmatch(text)
        if ago:
            seconds = float(ago.group(1)) * _UNITS[ago.group(2)]
            return time.time_ns() - int(seconds * 1e9)
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(
                f"{text!r} is not a time. Give an ISO time (2024-05-01T10:00:00, "
                "local unless it says its zone) or a time ago (30s, 10m, 2h, 1d).",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            moment = moment.astimezone()
        # Exact to the µs (a float timestamp would round the last digits).
        return (moment - _EPOCH) // datetime.timedelta(microseconds=1) * 1000


class Levels:
    """The level and text of each event as the console shows them.

    Lifecycle lines need the history of the run (``terminate()`` makes a death
    by SIGTERM expected), so every lifecycle event is shown to :meth:`of`
    before any filter can drop it.
    """

    def __init__(self) -> None:
        from mptrace._render.lines import lifecycle_line, span_line

        self.span_line = span_line
        self.lifecycle_line = lifecycle_line
        self.stopped: set[object] = set()

    def of(self, event: Event) -> tuple[str, str]:
        """(level, message) of *event*."""
        kind = event.get("kind")
        if kind == "span":
            return self.span_line(event)
        if kind == "lifecycle":
            target, transition = event.get("target_pid"), event.get("transition")
            if transition == "terminated":
                self.stopped.add(target)
            stopped = transition == "exited" and target in self.stopped
            if stopped:
                self.stopped.discard(target)
            return self.lifecycle_line(event, stopped)
        return str(event.get("level", "")), str(event.get("event", ""))


class Selection:
    """Which events the options ask for; :meth:`matches` decides for one event."""

    def __init__(
        self,
        kinds: frozenset[str],
        processes: tuple[str, ...] = (),
        pids: tuple[int, ...] = (),
        level: str | None = None,
        loggers: tuple[str, ...] = (),
        traces: tuple[str, ...] = (),
        spans: tuple[str, ...] = (),
        grep: re.Pattern[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        run: tuple[str | None] | None = None,
    ) -> None:
        self.kinds = kinds
        self.processes, self.pids = frozenset(processes), frozenset(pids)
        self.minimum = LEVELS[level] if level else None
        self.loggers = loggers
        self.traces, self.spans = frozenset(traces), frozenset(spans)
        self.grep = grep
        self.since, self.until = since, until
        self.run = run
        self.levels = Levels()

    def prefilter(self) -> Callable[[bytes], bool] | None:
        """A raw-line test for :class:`Reader` that drops only certain misses."""
        below = frozenset(
            name for name, rank in LEVELS.items()
            if self.minimum is not None and rank < self.minimum
        )  # fmt: skip
        if self.kinds == frozenset(KINDS) and not below:
            return None
        return make_prefilter(self.kinds, below)

    def matches(self, event: Event) -> tuple[bool, str, str]:
        """(selected, level, message) of *event*."""
        kind = event.get("kind")
        if kind == "lifecycle" or self.minimum is not None or self.grep:
            level, message = self.levels.of(event)
        else:
            level, message = str(event.get("level", "")), ""
        no = (False, level, message)
        if kind not in self.kinds:
            return no
        if self.run is not None and event.get("run") != self.run[0]:
            return no
        if (self.processes or self.pids) and not (
            event.get("process") in self.processes or event.get("pid") in self.pids
        ):
            return no
        if self.minimum is not None and LEVELS.get(level, self.minimum) < self.minimum:
            return no
        if self.loggers:
            name = str(event.get("logger", ""))
            if not any(name == p or name.startswith(p + ".") for p in self.loggers):
                return no
        if self.traces and event.get("trace_id") not in self.traces:
            return no
        if self.spans and event.get("span_id") not in self.spans:
            return no
        if self.since is not None or self.until is not None:
            ts = event_time(event)
            if ts is None or (self.since is not None and ts < self.since):
                return no
            if self.until is not None and ts > self.until:
                return no
        if self.grep is not None and not self.grep.search(message):
            return no
        return True, level, message


def resolve_run(run: str | None, paths: list[str]) -> tuple[str | None] | None:
    """``--run``: None for every run, else a 1-tuple of the run id (None: no id)."""
    if run is None or run == "all":
        return None
    if run == "last":
        return (last_run(paths),)
    return (run,)
