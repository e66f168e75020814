"""Shared fixtures: start methods, sessions writing JSON lines, and clean globals."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import select
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mptrace

START_METHODS = [
    m
    for m in ("fork", "spawn", "forkserver")
    if m in multiprocessing.get_all_start_methods()
]


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each multi-process test runs once per start method."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _restore_globals() -> Iterator[None]:
    """Put the root logger, structlog and the environment back after every test."""
    import structlog

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    configured = structlog.is_configured()
    environ = dict(os.environ)
    yield
    mptrace.shutdown()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    if configured:
        structlog.configure(**config)
    os.environ.clear()
    os.environ.update(environ)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Every JSON line of *path*; fails the test on a line that is not JSON."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8")  # the file must be valid UTF-8
    return [json.loads(line) for line in text.splitlines() if line]


def read_pty(master: int, proc: Any, timeout: float) -> bytes:
    """Everything written to a pseudo-terminal until every writer has closed it."""
    import errno
    import time

    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise TimeoutError("the program did not finish")
        if not select.select([master], [], [], left)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError as exc:  # Linux: EIO once the last writer has closed it
            if exc.errno == errno.EIO:
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait on a pidfd for *pid* to exit; True if it did within *timeout*."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def logs_of(events: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    """The log events whose fields equal every item of *match*."""
    return [
        e
        for e in events
        if e.get("kind") == "log" and all(e.get(k) == v for k, v in match.items())
    ]


def spans_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The spans called *name* (JSON-lines events or spans decoded from OTLP)."""
    return [e for e in events if "span_id" in e and e.get("name") == name]


def one_span(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one span called *name*; fails the test, listing all names, otherwise."""
    found = spans_named(events, name)
    names = sorted(str(e.get("name")) for e in events if "span_id" in e)
    assert len(found) == 1, f"{len(found)} spans named {name!r}; all: {names}"
    return found[0]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    """Path of a JSON-lines file for the session under test."""
    return tmp_path / "events.jsonl"


@pytest.fixture
def session(jsonl: Path) -> Iterator[mptrace.Session]:
    """A session exporting to ``jsonl``; shut down after the test."""
    s = mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG")
    yield s
    s.shutdown()


def python() -> str:
    return sys.executable
