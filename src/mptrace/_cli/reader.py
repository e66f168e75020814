"""Reading JSON-lines files of events as a stream, never whole into memory.

::

    paths ──order_files()──▶ lines of each file (gzip too) ──keep(raw)?─┐
        ┌───────────────────────────────────────────────────────────┘
        └▶ json.loads ──is it an event?──▶ (raw line, event) to the command
                        │
                        └─ no: Problems says "run.jsonl:17: not JSON (...)"

``keep`` is an optional cheap test on the raw bytes that may only drop lines
that certainly do not match (see :func:`make_prefilter`); everything it keeps
is decoded and checked in full by the caller. With ``follow``, the newest file
is then watched like ``tail -F``: appended lines, and a new file at the same
path after a rotation.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TextIO, cast

from mptrace._schema.events import Event as Event

Prefilter = Callable[[bytes], bool]

#: How many unreadable lines are described before they are only counted.
MAX_PROBLEMS = 10
_GZIP_MAGIC = b"\x1f\x8b"
# json.loads without its wrappers: lines are UTF-8 already and begin with "{".
_raw_decode = json.JSONDecoder().raw_decode


class Problems:
    """Says on stderr, once per line, which lines could not be read, up to a cap.

    The messages name the file and line (``run.jsonl:17: not JSON (...)``);
    after :data:`MAX_PROBLEMS` of them the rest are only counted, and
    :meth:`finish` prints the count.
    """

    def __init__(self, stream: TextIO | None = None, limit: int = MAX_PROBLEMS) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0

    def report(self, where: str, what: str) -> None:
        """Record one unreadable line; print it while under the cap."""
        self.count += 1
        if self.count <= self.limit:
            print(f"{where}: {what}", file=self.stream or sys.stderr, flush=True)

    def finish(self) -> None:
        """Print how many were not shown, if any."""
        hidden = self.count - self.limit
        if hidden > 0:
            print(
                f"mptrace: {hidden} more unreadable line{'s' * (hidden != 1)} "
                "not shown.",
                file=self.stream or sys.stderr,
            )


def open_binary(path: str) -> IO[bytes]:
    """Open *path* for reading bytes; gzip files (by their magic bytes) decompressed."""
    f = open(path, "rb")  # handed to the caller, who closes it
    if f.peek(2)[:2] == _GZIP_MAGIC:
        f.close()
        return cast(IO[bytes], gzip.open(path, "rb"))
    return f


def decode(raw: bytes, where: str, problems: Problems) -> Event | None:
    """The event on line *raw*, or None after telling *problems* why there is none."""
    try:
        text = raw.decode("utf-8")
        if text[:1] != "{":
            if text.isspace():
                return None  # a blank line says nothing
            text = text.lstrip()
        event, end = _raw_decode(text)
        if text[end:].strip():
            raise ValueError(f"extra data after the JSON value: column {end + 1}")
    except UnicodeDecodeError:
        problems.report(where, "not UTF-8; each line must be UTF-8 JSON.")
        return None
    except ValueError as exc:
        if not raw.endswith(b"\n"):
            problems.report(where, "truncated line: the file ends inside it.")
        else:
            problems.report(where, f"not JSON ({exc}).")
        return None
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        problems.report(
            where, 'not an mptrace event: an event is a JSON object with a "kind".'
        )
        return None
    return event


def event_time(event: Event) -> int | None:
    """When *event* happened, in ns: ``ts``, or a span's ``end_ns``."""
    ts = event.get("ts", event.get("end_ns"))
    return ts if type(ts) is int else None


def _first_time(path: str) -> int | None:
    """The time of the first line of *path* that is an event with a time."""
    try:
        with open_binary(path) as f:
            for _, raw in zip(range(50), f, strict=False):
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and (ts := event_time(event)) is not None:
                    return ts
    except (OSError, EOFError):
        return None
    return None


def order_files(paths: Iterable[str]) -> list[str]:
    """*paths* oldest first, by the time of their first event.

    So ``run.jsonl*`` reads rotated files (``run.jsonl.2.gz``, ``run.jsonl.1``,
    ``run.jsonl``) in the order they were written. Files without a readable
    first event keep their place after the others.
    """
    given = list(dict.fromkeys(paths))
    keyed = [(_first_time(p), i, p) for i, p in enumerate(given)]
    keyed.sort(key=lambda k: (k[0] is None, k[0] or 0, k[1]))
    return [p for _, _, p in keyed]


# -- which run ------------------------------------------------------------------

_RUN_KEY = b'"run"'
_BLOCK = 1 << 16


def _lines_backwards(path: str) -> Iterator[bytes]:
    """The lines of *path* from the last to the first, in blocks from its end."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - _BLOCK)
            f.seek(start)
            block = f.read(end - start) + rest
            end = start
            lines = block.split(b"\n")
            rest = lines[0] if start > 0 else b""
            yield from reversed(lines[1:] if start > 0 else lines)


def _run_of(raw: bytes) -> tuple[bool, str | None]:
    """(True, run) when *raw* is an event carrying a ``run`` key."""
    if _RUN_KEY not in raw:
        return False, None
    try:
        event = json.loads(raw)
    except ValueError:
        return False, None
    if isinstance(event, dict) and "run" in event:
        run = event["run"]
        return True, None if run is None else str(run)
    return False, None


def last_run(paths: list[str]) -> str | None:
    """The run of the last line that names one, in files ordered by :func:`order_files`.

    Plain files are read from their end, block by block, so the answer costs
    a few blocks when the last run is recent; gzip files are streamed. None
    when no line names a run: then the files are one run, of lines without one.
    """
    for path in reversed(paths):
        try:
            with open(path, "rb") as probe:
                compressed = probe.read(2) == _GZIP_MAGIC
        except OSError:
            continue
        if compressed:
            found: str | None = None
            seen = False
            with open_binary(path) as f:
                for raw in f:
                    has, run = _run_of(raw)
                    if has:
                        seen, found = True, run
            if seen:
                return found
            continue
        for raw in _lines_backwards(path):
            has, run = _run_of(raw)
            if has:
                return run
    return None


# -- the stream ----------------------------------------------------------------


def make_prefilter(kinds: frozenset[str] | None, below: frozenset[str]) -> Prefilter:
    """A test on raw lines that is False only for lines that cannot match.

    mptrace writes ``{"kind":"log","ts":N,"level":"info",...`` with the kind
    first (files of earlier versions have a space after ``:`` and ``,``); a
    line that starts so and ends with ``}`` is dropped when its kind is not
    in *kinds* or its level is in *below*. Any other line is kept, to be
    decoded and checked in full (so a broken line is still reported).
    """
    head = re.compile(
        rb'\{"kind": ?"([a-z]+)"(?:, ?"ts": ?-?\d+, ?"level": ?"([^"\\]*)")?'
    ).match

    def keep(raw: bytes) -> bool:
        m = head(raw)
        if m is None or not raw.endswith((b"}\n", b"}")):
            return True
        if kinds is not None and m.group(1).decode() not in kinds:
            return False
        level = m.group(2)
        return level is None or level.decode() not in below

    return keep


class Reader:
    """Yields ``(raw line, event)`` from files in order, then follows the last one.

    *keep* drops raw lines before they are decoded (see :func:`make_prefilter`).
    With *follow*, it never ends by itself: it polls the last path every
    *poll* seconds for appended lines, for a new file at the path (rotation:
    the rest of the old file is read first) and for truncation.
    """

    def __init__(
        self,
        paths: list[str],
        problems: Problems,
        keep: Prefilter | None = None,
        follow: bool = False,
        poll: float = 0.1,
    ) -> None:
        self.paths = paths
        self.problems = problems
        self.keep = keep
        self.follow = follow
        self.poll = poll
        #: Called when reading catches up with the end of the followed file.
        self.on_idle: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[tuple[bytes, Event]]:
        last = len(self.paths) - 1
        for i, path in enumerate(self.paths):
            try:
                f = open_binary(path)
            except OSError as exc:
                self.problems.report(path, f"cannot be read ({exc.strerror}).")
                continue
            if self.follow and i == last and not isinstance(f, gzip.GzipFile):
                yield from self._follow(path, f)
                return
            with f:
                yield from self._lines(path, f, 0)

    def _lines(
        self, path: str, f: IO[bytes], lineno: int
    ) -> Iterator[tuple[bytes, Event]]:
        keep, problems = self.keep, self.problems
        try:
            for raw in f:
                lineno += 1
                if raw != b"\n" and (keep is None or keep(raw)):
                    event = decode(raw, f"{path}:{lineno}", problems)
                    if event is not None:
                        yield raw, event
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            problems.report(f"{path}:{lineno + 1}", f"cannot be read ({exc}).")

    def _decoded(self, raw: bytes, where: str) -> Event | None:
        if raw != b"\n" and (self.keep is None or self.keep(raw)):
            return decode(raw, where, self.problems)
        return None

    def _follow(self, path: str, f: IO[bytes]) -> Iterator[tuple[bytes, Event]]:
        """Read *path* to its end, then keep reading what is added, across rotations."""
        lineno = 0
        partial = b""
        while True:
            raw = f.readline()
            if raw.endswith(b"\n"):
                lineno += 1
                raw, partial = partial + raw, b""
                if (event := self._decoded(raw, f"{path}:{lineno}")) is not None:
                    yield raw, event
                continue
            partial += raw  # a line still being written: wait for its end
            if self.on_idle is not None:
                self.on_idle()
            replaced = self._replaced(path, f)
            if replaced is None:
                time.sleep(self.poll)
                continue
            if replaced is f:  # truncated in place: start again from the top
                f.seek(0)
                lineno, partial = 0, b""
                continue
            # Rotated: what the old file still holds comes before the new file.
            for raw in iter(f.readline, b""):
                lineno += 1
                raw, partial = partial + raw, b""
                if (event := self._decoded(raw, f"{path}:{lineno}")) is not None:
                    yield raw, event
            if partial:
                self._decoded(partial, f"{path}:{lineno + 1}")  # says: truncated
            f.close()
            f, lineno, partial = replaced, 0, b""

    @staticmethod
    def _replaced(path: str, f: IO[bytes]) -> IO[bytes] | None:
        """A new file at *path* (rotation), *f* itself when truncated, else None."""
        try:
            now = os.stat(path)
        except OSError:
            return None  # between the rename and the new file: look again later
        mine = os.fstat(f.fileno())
        if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            try:
                return open(path, "rb")
            except OSError:
                return None
        if now.st_size < f.tell():
            return f
        return None
