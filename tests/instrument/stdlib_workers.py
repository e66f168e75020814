"""Children for test_stdlib_suites: importable by name under spawn and forkserver."""

from __future__ import annotations

import os
import threading
from typing import Any

#: What ``sys.unraisablehook`` got in this process (a forked child inherits the hook).
UNRAISABLE: list[str] = []


def keep_unraisable(unraisable: Any) -> None:
    UNRAISABLE.append(f"{unraisable.err_msg}: {unraisable.exc_value!r}")


def report_threads(conn: Any) -> None:
    """Send what this child's start left behind: unraisables and threads."""
    conn.send((list(UNRAISABLE), [t.name for t in threading.enumerate()]))
    conn.close()


def no_op() -> int:
    return os.getpid()
