"""Dask distributed, traced: ``pip install "mptrace[dask]"``.

In a session (``mptrace.init()`` or ``mptrace run``), a ``Client`` carries
the current span with each task it submits, and a ``Worker`` made in a
process of the session (a ``LocalCluster``'s, or ``dask worker`` run under
``mptrace run``) makes each task it executes a span under that one, in the
same trace; the records logged in a task carry its span's ids, and
``@mptrace.traced`` inside it is its child. Nothing to call for that.

For workers started outside any session (a cluster someone else runs),
:func:`register` gives them the plugin; their spans and records reach the
session of the process they run in, if any.
"""

from __future__ import annotations

from typing import Any

from mptrace._instrument.dask_tasks import ANNOTATION, TaskSpans

__all__ = ["ANNOTATION", "TaskSpans", "register"]


def register(client: Any) -> None:
    """Give *client*'s cluster's workers, now and later, a span per task."""
    client.register_plugin(TaskSpans())
