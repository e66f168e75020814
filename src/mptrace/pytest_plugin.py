"""The pytest plugin: run a test inside an mptrace session and read what it sent.

Installed with mptrace (a ``pytest11`` entry point); it does nothing until a
test asks for its fixture::

    def test_workers_log(mptrace_session):
        with mptrace.get_context("spawn").Pool(2) as pool:
            pool.map(work, range(4))
        assert mptrace_session.records(event="done")
        assert mptrace_session.spans("task mymod.work")

    @pytest.mark.mptrace(level="DEBUG")
    def test_children_reach_caplog(mptrace_session, caplog):
        run_children()
        mptrace_session.to_caplog(caplog)  # children's records, as LogRecords
        assert "child started" in caplog.text

The session exports to the ``memory`` sink (and whatever the marker's
``exporters=`` adds); the marker's keyword arguments go to
:func:`mptrace.init`. Every process's events come back as plain dicts, in
the JSON-lines schema.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest


class SessionCapture:
    """A test's session and what every process sent to it."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._replayed = 0

    def events(self) -> list[dict[str, Any]]:
        """Every event so far (flushing first), or all of them after shutdown."""
        return self.session.events()  # type: ignore[no-any-return]

    def records(self, **match: Any) -> list[dict[str, Any]]:
        """The log records whose fields equal every item of *match*."""
        return [
            e
            for e in self.events()
            if e.get("kind") == "log" and all(e.get(k) == v for k, v in match.items())
        ]

    def spans(self, name: str | None = None) -> list[dict[str, Any]]:
        """The ended spans, or those called *name*."""
        return [
            e
            for e in self.events()
            if e.get("kind") == "span" and (name is None or e.get("name") == name)
        ]

    def lifecycle(self) -> list[dict[str, Any]]:
        """The lifecycle transitions of every child."""
        return [e for e in self.events() if e.get("kind") == "lifecycle"]

    def to_caplog(self, caplog: pytest.LogCaptureFixture) -> int:
        """Give *caplog* the records of other processes that came since the last call.

        They become ``LogRecord`` objects with the child's logger name, level,
        message, time, pid and process name (and its fields as attributes),
        so ``caplog.records``, ``caplog.text`` and ``caplog.record_tuples``
        show them. Returns how many were handed over.
        """
        own = os.getpid()
        theirs = [e for e in self.records() if e.get("pid") != own]
        fresh, self._replayed = theirs[self._replayed :], len(theirs)
        for event in fresh:
            caplog.handler.handle(_log_record(event))
        return len(fresh)


def _log_record(event: dict[str, Any]) -> logging.LogRecord:
    level = str(event.get("level", "info")).upper()
    levelno = logging.getLevelName(level)
    fields = {k: v for k, v in event.items() if k not in _RECORD_KEYS}
    record = logging.makeLogRecord(
        {
            **fields,
            "name": event.get("logger") or "root",
            "levelno": levelno if isinstance(levelno, int) else logging.INFO,
            "levelname": level,
            "msg": str(event.get("event", "")),
            "created": (event.get("ts") or 0) / 1e9,
            "process": event.get("pid"),
            "processName": event.get("process"),
        }
    )
    if isinstance(event.get("exc"), dict):
        record.exc_text = event["exc"].get("traceback") or None
    return record


_RECORD_KEYS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"kind", "ts", "level", "logger", "event", "exc", "message"}
)


@pytest.fixture
def mptrace_session(request: pytest.FixtureRequest) -> Iterator[SessionCapture]:
    """The test runs inside an mptrace session; read its events as dicts."""
    import mptrace

    marker = request.node.get_closest_marker("mptrace")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    exporters = kwargs.pop("exporters", ())
    exporters = [exporters] if isinstance(exporters, str) else list(exporters)
    session = mptrace.init(exporters=["memory", *exporters], **kwargs)
    try:
        yield SessionCapture(session)
    finally:
        session.shutdown()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mptrace(**kwargs): keyword arguments for mptrace.init() in the "
        "mptrace_session fixture",
    )
