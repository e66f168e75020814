"""Where a session's start and end spend their time, when asked.

``MPTRACE_PROFILE=FILE`` makes the owner and the listener each note
``time.perf_counter()`` at the phases of a session's start and end (a name
and a time in a list: nothing is written while the session runs) and append
them to *FILE* as JSON lines, ``{"pid", "side", "marks": [[name, seconds]]}``,
as they finish. ``perf_counter`` is the system's monotonic clock on Linux, so
the marks of the two processes, and of whatever started the program, line up.
``benchmarks/startup.py`` reads them. Without the variable a mark is one
comparison with None.
"""

from __future__ import annotations

import os
import time

#: The variable that names the file; read once, by :func:`start`.
VARIABLE = "MPTRACE_PROFILE"

_marks: list[tuple[str, float]] | None = None


def start(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Begin noting marks if *environ* asks for it (at a session's start)."""
    global _marks
    _marks = [] if environ.get(VARIABLE) else None


def mark(name: str) -> None:
    """Note that phase *name* ends now."""
    if _marks is not None:
        _marks.append((name, time.perf_counter()))


def write(side: str, last: str) -> None:
    """Mark *last*, append this process's marks to the file and stop noting.

    Never raises.
    """
    global _marks
    mark(last)
    marks, _marks = _marks, None
    path = os.environ.get(VARIABLE)
    if marks is None or not path:
        return
    import json

    line = json.dumps({"pid": os.getpid(), "side": side, "marks": marks})
    try:
        # O_APPEND: the owner's and the listener's lines never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass
