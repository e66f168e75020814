"""Spans a process announced and never ended: ended here, as cut short.

A task that takes its process down with it (``os._exit``, SIGKILL, a
segfault in C) never ends its span, and a span not ended is never sent: the
trace would hold the task's records under a span that does not exist. So
an engine's task span is announced as it starts (a ``span`` frame flagged
``OPEN_SPAN``, the span as it is then, without ``end_ns``). The listener
keeps the announcement, writes nothing of it, and forgets it when the span
itself arrives; if the process's stream ends first, the span is written
then, ended at that moment, with ERROR status and ``mptrace.span.cut``.
"""

from __future__ import annotations

import time
from typing import Any

from mptrace._schema.events import Event

CUT_MESSAGE = "its process ended before the span did"


class OpenSpans:
    """Announced spans by stream, until they end or their stream does."""

    def __init__(self) -> None:
        self._by_peer: dict[Any, dict[str, Event]] = {}

    def __contains__(self, peer: Any) -> bool:
        return peer in self._by_peer

    def begin(self, peer: Any, span: Event | None) -> None:
        if span is not None and isinstance(span.get("span_id"), str):
            self._by_peer.setdefault(peer, {})[span["span_id"]] = span

    def end(self, peer: Any, span: Event | None) -> None:
        spans = self._by_peer.get(peer)
        if spans is not None and span is not None:
            spans.pop(span.get("span_id"), None)  # type: ignore[arg-type]
            if not spans:
                del self._by_peer[peer]

    def cut(self, peer: Any) -> list[Event]:
        """The spans *peer* left open, ended now as cut short."""
        now = time.time_ns()
        cut = []
        for span in self._by_peer.pop(peer, {}).values():
            attributes = dict(span.get("attributes") or {})
            attributes["mptrace.span.cut"] = True
            cut.append(
                {
                    **span,
                    "end_ns": now,
                    "status": "error",
                    "status_message": CUT_MESSAGE,
                    "attributes": attributes,
                }
            )
        return cut
