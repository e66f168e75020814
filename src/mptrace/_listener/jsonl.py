"""The sinks that need no network: a JSON-lines file, and the memory sink.

``rotate`` adds rotation to :class:`JsonlSink`; the ``memory`` sink is a
JSON-lines file in the session's folder that its owner reads back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from mptrace._schema.events import Event, to_json
from mptrace.exceptions import ConfigurationError
from mptrace.sinks import SinkSpec


class JsonlSink:
    """Appends one JSON object per event to a file.

    Events that arrived encoded are written as they came. Strings with lone
    surrogates are written with ``\\udcXX`` escapes, which JSON reads back as
    the same string: the file is always valid UTF-8.
    """

    dropped = 0

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"jsonl ({path})"
        self.file = open(path, "ab", buffering=1024 * 1024)

    def export_raw(self, lines: Sequence[bytes]) -> None:
        self.file.write(b"\n".join(lines) + b"\n")

    def export(self, events: Sequence[Event]) -> None:
        self.export_raw([to_json(e) for e in events])

    def force_flush(self, timeout: float = 5.0) -> bool:
        self.file.flush()
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        if not self.file.closed:
            self.file.flush()
            try:
                os.fsync(self.file.fileno())  # on disk before the program ends
            except OSError:  # a pipe, a terminal: nothing to sync
                pass
            self.file.close()


def cut_partial_line(path: str) -> int:
    """Cut the end of *path* back to its last newline; the bytes cut.

    A listener that takes over from one that died appends to the same file;
    the dead one may have been killed in the middle of a line. That record
    was not acknowledged, so its writer gave it again: the half line goes,
    and the file stays one JSON object a line. Nothing is cut from a file
    that ends in a newline or that cannot be read.
    """
    try:
        with open(path, "rb+") as f:
            end = f.seek(0, os.SEEK_END)
            start = max(0, end - 1024 * 1024)
            f.seek(start)
            tail = f.read()
            if not tail or tail.endswith(b"\n"):
                return 0
            keep = tail.rfind(b"\n") + 1
            if keep == 0 and start > 0:
                return 0  # no newline in the last MiB: not a line of ours
            f.truncate(start + keep)
            return end - (start + keep)
    except OSError:
        return 0


MEMORY_FILE = "memory.jsonl"


def memory_path(session_dir: str) -> str:
    """Where the ``memory`` sink keeps a session's events for its owner."""
    return os.path.join(session_dir, MEMORY_FILE)


def read_memory(session_dir: str) -> list[Event]:
    """The ``memory`` sink's events so far, as dicts, in order."""
    try:
        with open(memory_path(session_dir), "rb") as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def jsonl_path(name: str, target: str | None) -> SinkSpec:
    if not target:
        raise ConfigurationError(
            "The exporter 'jsonl' needs a file path, as in 'jsonl:run.jsonl'."
        )
    path = os.path.abspath(os.path.expanduser(target))
    if not os.path.isdir(os.path.dirname(path)):
        raise ConfigurationError(
            f"The folder of the JSON-lines file {target!r} does not exist; "
            "give a path in an existing folder."
        )
    if os.path.isdir(path):
        raise ConfigurationError(
            f"The JSON-lines path {target!r} is a folder; give a file path."
        )
    return SinkSpec("jsonl", path)
