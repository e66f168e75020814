"""Dask distributed: the submitting span rides with each task; workers span them.

Client side: every way a client submits work (``submit``, ``map``,
``compute``, ``persist``, ``get``, and so delayed, bag, array and dataframe)
ends in one ``update-graph`` message, built in the submitting thread. The
message's annotations (which the scheduler gives every task of the graph,
and each worker keeps in its ``TaskState.annotations``) get the current
span's ``traceparent``: taken at submission, so a graph built under one
span and computed under another is the second's. A graph that already
carries its own (``dask.annotate(mptrace=...)``) keeps it.

Worker side: a ``Worker`` made in a process of the session gets the
``TaskSpans`` plugin (``dask_tasks``), through the ``plugins=`` argument
its constructor takes, as ``dask worker --preload`` would give it: so a
``LocalCluster`` of processes, or ``dask worker`` under ``mptrace run``,
needs nothing more. ``mptrace.dask.register(client)`` gives it to a
cluster's workers that were started otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mptrace._instrument import tracing as _tracing

ANNOTATION = "mptrace"  # the same as dask_tasks.ANNOTATION, without importing it


def _send_to_scheduler(original: Callable[..., Any]) -> Callable[..., Any]:
    def _send_to_scheduler(self: Any, msg: Any) -> Any:
        if type(msg) is dict and msg.get("op") == "update-graph":
            _carry(msg)
        return original(self, msg)

    return _send_to_scheduler


def _carry(msg: dict[str, Any]) -> None:
    """Put the current span's carrier among an ``update-graph``'s annotations."""
    if _tracing.session_tracer() is None:
        return
    wrapped: Any = msg.get("annotations")
    data = getattr(wrapped, "data", None)
    if not isinstance(data, dict) or ANNOTATION in data:
        return
    msg["annotations"] = type(wrapped)({**data, ANNOTATION: _tracing.carrier()})


def _worker_init(original: Callable[..., Any]) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _tracing.session_tracer() is not None:
            from mptrace._instrument.dask_tasks import TaskSpans

            plugins = tuple(kwargs.get("plugins") or ())
            if not any(getattr(p, "name", None) == TaskSpans.name for p in plugins):
                kwargs["plugins"] = (*plugins, TaskSpans())
        original(self, *args, **kwargs)

    return __init__


CLIENT: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("Client", "_send_to_scheduler", _send_to_scheduler)
]
WORKER: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("Worker", "__init__", _worker_init)
]
