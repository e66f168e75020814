"""Dask distributed's tasks as spans, in the worker that runs them.

A worker's state machine tells its plugins each transition of each task
(``WorkerPlugin.transition``), in the worker's event loop. A task that
starts ``executing`` opens a span ``task <key prefix>`` under the span that
submitted it (the client put its ``traceparent`` among the task's
annotations, ``engines_dask``), linked to this worker's process span; the
task leaving ``executing`` (or ``long-running``, once it seceded) ends it:
``memory`` is success, ``error`` an error with the task's exception. A task
retried runs again as another span: each attempt is one. The function runs
in a thread of the worker's pool, where no context is current: the worker
says which task a thread runs (``distributed``'s ``thread_state.key``), and
``_participant.ambient`` hands its span to the records logged there and to
the spans started there (``@mptrace.traced``).

Imported in a Dask worker only: it needs ``distributed``.
"""

from __future__ import annotations

import os
from typing import Any

from dask.context import thread_state  # distributed's, where it says which task
from dask.utils import key_split
from distributed.diagnostics.plugin import WorkerPlugin
from opentelemetry import trace

from mptrace._instrument import tracing as _tracing
from mptrace._participant import ambient as _ambient
from mptrace._participant import participant as _participant

#: The annotation the client puts the submitting span's carrier under.
ANNOTATION = "mptrace"
_RUNNING = frozenset(("executing", "long-running"))
#: The spans of the tasks executing in this process, by key: one table for
#: every worker of the process (a cluster of threads has several).
_spans: dict[Any, Any] = {}


def current() -> Any:
    """The span of the task this thread runs, or None (``ambient``'s finder)."""
    key = getattr(thread_state, "key", None)
    return _spans.get(key) if key is not None else None


class TaskSpans(WorkerPlugin):
    """A span per task a worker executes. Registered by ``mptrace.dask``."""

    name = "mptrace"

    def __init__(self) -> None:
        self.worker: Any = None
        self.keys: set[Any] = set()  # of this worker's tasks in ``_spans``

    def setup(self, worker: Any) -> None:
        self.worker = worker
        _ambient.set_finder(current)

    def teardown(self, worker: Any) -> None:
        for key in self.keys:  # the worker closes mid-task
            _tracing.end_span(_spans.pop(key), None)
        self.keys.clear()

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish in _RUNNING and start not in _RUNNING:
            self._begin(key)
        elif start in _RUNNING and finish not in _RUNNING:
            span = _spans.pop(key, None) if key in self.keys else None
            self.keys.discard(key)
            if span is not None:
                self._end(span, key, finish)

    def _begin(self, key: Any) -> None:
        tracer = _tracing.session_tracer()
        if tracer is None:
            return
        ts = self.worker.state.tasks.get(key)
        annotations = (getattr(ts, "annotations", None) or {}) if ts else {}
        carrier = annotations.get(ANNOTATION)
        part = _participant.current()
        own = part.process_span_context if part is not None else None
        links = [trace.Link(own, {"mptrace.link": "worker process"})] if own else []
        context = _tracing.context_of(carrier) if isinstance(carrier, dict) else None
        span = _spans[key] = tracer.start_span(
            f"task {key_split(key)}",
            context=_tracing.parent_context(context),
            links=links,
            attributes={
                "mptrace.span": "task",
                "mptrace.task.items": 1,
                "dask.key": str(key),
                "dask.worker.address": str(getattr(self.worker, "address", "")),
                "process.pid": os.getpid(),
            },
        )
        self.keys.add(key)
        # A task that ends its process (os._exit, a signal) never ends its
        # span: announced, it is ended by the listener, as cut short.
        _participant.announce(span)

    def _end(self, span: Any, key: Any, finish: str) -> None:
        if finish == "error":
            ts = self.worker.state.tasks.get(key)
            text = getattr(ts, "exception_text", "") or "the task failed"
            span.add_event(
                "exception",
                {
                    "exception.message": text,
                    "exception.stacktrace": getattr(ts, "traceback_text", "") or "",
                },
            )
            span.set_status(trace.Status(trace.StatusCode.ERROR, text))
        elif finish != "memory":  # released, cancelled, rescheduled: not a result
            span.set_attribute("dask.task.outcome", finish)
        _tracing.end_span(span, None)
