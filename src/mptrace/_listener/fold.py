"""Repeated records, in the listener: folded on the console, limited in a file.

A loop that logs the same warning in every worker buries everything else
on the terminal. The console shows the first record of a kind and counts
the ones like it for a window; the JSON-lines file keeps every record
unless the user sets a rate::

    console:  record ──▶ Repeats.check ──▶ first of its key in the window: shown
                               └─▶ else counted; when the window passes, or
                                   the run ends: one line "... repeated 4,213
                                   times in 8 processes"
    jsonl:    line ──▶ RateLimit.keep ──▶ within its logger's records per
                               second: written; else counted, said at the end

Two records are alike when their logger, level and message template (the
stdlib's ``msg`` before ``%`` formatting: the ``template`` key, present when
the record had arguments; else the message itself) are equal, whichever
process sent them. The rate counts each logger's records per second of their
own timestamps, so what it keeps does not hang on how the listener was
scheduled.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from mptrace._schema.events import Event

#: Seconds a shown record folds the ones like it, with ``console?repeats``
#: and no number. Off unless asked: records of one template with different
#: arguments (a batch number, a path) fold too, and a program that logs one
#: line per worker would show one line and a count.
REPEATS_WINDOW = 5.0
#: Keys remembered at most; past it the oldest are said and forgotten.
MAX_KEYS = 10_000


class _Seen:
    __slots__ = ("count", "first", "pids", "since")

    def __init__(self, since: float, first: Event) -> None:
        self.since = since
        self.first = first
        self.count = 0
        self.pids: set[Any] = set()


class Repeats:
    """Which console records to show, and the lines that count the rest.

    *say* gets a line (an event for the console's renderer) for each key
    whose window ended with records counted. The caller holds one lock
    around every call: records come from the listener's thread, the end of
    a window from the console's.
    """

    def __init__(self, window: float, say: Callable[[Event], None]) -> None:
        self.window = window
        self.say = say
        self.seen: dict[tuple[Any, Any, Any], _Seen] = {}

    def check(self, event: Event) -> bool:
        """True: show *event*; False: one like it was shown within the
        window, and this one is counted instead."""
        key = (event.get("logger"), event.get("level"), template(event))
        now = time.monotonic()
        seen = self.seen.get(key)
        if seen is not None and now - seen.since < self.window:
            seen.count += 1
            seen.pids.add(event.get("pid"))
            return False
        if seen is not None:
            self._end(key, seen)
        elif len(self.seen) >= MAX_KEYS:
            self._end(*next(iter(self.seen.items())))
        self.seen[key] = _Seen(now, event)
        return True

    def expire(self) -> bool:
        """Say the windows that have passed; True while any is still open
        with records counted (the console's thread looks again soon)."""
        now = time.monotonic()
        waiting = False
        for key, seen in list(self.seen.items()):
            if now - seen.since >= self.window:
                self._end(key, seen)
            elif seen.count:
                waiting = True
        return waiting

    def flush(self) -> None:
        """The run ends: every count is said."""
        for key, seen in list(self.seen.items()):
            self._end(key, seen)

    def _end(self, key: tuple[Any, Any, Any], seen: _Seen) -> None:
        del self.seen[key]
        if seen.count:
            self.say(repeat_line(seen.first, seen.count, len(seen.pids)))


def template(event: Event) -> Any:
    """What makes two records alike besides logger and level."""
    found = event.get("template")
    return found if found is not None else event.get("event")


def repeat_line(first: Event, count: int, processes: int) -> Event:
    """The console's line for *count* records like *first* not shown."""
    text = str(template(first))
    if len(text) > 80:
        text = text[:77] + "..."
    where = f"{processes:,} process{'es' * (processes != 1)}"
    return {
        # Said now, in order: the count comes when its window ends (a record's
        # own time would put it behind lines already out).
        "ts": time.time_ns(),
        "level": first.get("level", "info"),
        "logger": first.get("logger"),
        "process": "mptrace",
        "pid": "-",
        "event": f'"{text}" repeated {count:,} time{"s" * (count != 1)} in {where}',
    }


# -- the JSON-lines file's rate -------------------------------------------------

RATE_HELP = (
    "max_rate is a number of records per second that every logger may write, "
    "and rate names loggers with their own, as in 'rate=app.db:100,noisy:5' "
    "(a logger's children share its limit)."
)
#: A log line as the participant encodes it: its time and logger, read
#: without decoding the line (any other shape is decoded).
_HEAD = re.compile(
    rb'^\{"kind":"log","ts":(\d+),"level":"[^"\\]*","logger":"([^"\\]*)"'
)
#: Seconds of counts kept (records come out of order by a little).
_SECONDS_KEPT = 10


def parse_rates(text: str) -> dict[str, int]:
    """``NAME:N,NAME:N`` as {logger: records per second}."""
    rates: dict[str, int] = {}
    for part in text.split(","):
        name, _, number = part.strip().rpartition(":")
        if not name or not number.isdigit() or int(number) < 1:
            raise ValueError(f"Invalid rate {part!r}")
        rates[name] = int(number)
    return rates


class RateLimit:
    """Records per second per logger, by the records' own timestamps."""

    dropped_what = "records over the rate limit"

    def __init__(self, max_rate: int = 0, rates: dict[str, int] | None = None) -> None:
        self.max_rate = max_rate
        self.rates = dict(sorted((rates or {}).items(), key=lambda kv: -len(kv[0])))
        self.counts: dict[tuple[str, int], int] = {}
        self.limits: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.newest = 0

    def keep(self, line: bytes) -> bool:
        """True: write *line*. Lines other than log records are always kept."""
        if not line.startswith(b'{"kind":"log"'):
            return True
        head = _HEAD.match(line)
        if head is not None:
            ts, logger = int(head.group(1)), head.group(2).decode("utf-8", "replace")
        else:
            try:
                event = json.loads(line)
                ts, logger = int(event.get("ts") or 0), str(event.get("logger"))
            except (ValueError, TypeError):
                return True  # not ours to judge: written as it came
        limit = self.limits.get(logger)
        if limit is None:
            limit = self.limits[logger] = self._limit_of(logger)
        if not limit:
            return True
        second = ts // 1_000_000_000
        key = (logger, second)
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        if second > self.newest:
            self.newest = second
            if len(self.counts) > 1000:
                self._forget(second - _SECONDS_KEPT)
        if count <= limit:
            return True
        self.dropped[logger] = self.dropped.get(logger, 0) + 1
        return False

    def _limit_of(self, logger: str) -> int:
        for name, rate in self.rates.items():
            if logger == name or logger.startswith(name + "."):
                return rate
        return self.max_rate

    def _forget(self, before: int) -> None:
        self.counts = {k: n for k, n in self.counts.items() if k[1] >= before}

    def total(self) -> int:
        return sum(self.dropped.values())

    def said(self) -> str:
        """What was dropped, by logger, the most first (for the end's line)."""
        top = sorted(self.dropped.items(), key=lambda kv: -kv[1])[:5]
        names = ", ".join(f"{name} {n:,}" for name, n in top)
        more = ", ..." if len(self.dropped) > len(top) else ""
        return f"{self.dropped_what} ({names}{more})"
