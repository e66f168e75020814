"""Children for test_echo: importable by name under spawn and forkserver."""

from __future__ import annotations

import threading
from typing import Any


def report_threads(conn: Any) -> None:
    conn.send([t.name for t in threading.enumerate()])
    conn.close()
