"""Configuration: mistakes fail at once and start nothing; sessions start and stop cleanly."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import structlog
from conftest import logs_of, read_jsonl
from workers import (
    log_stdlib_and_structlog,
    processor_add_listener_pid,
    processor_drop_marked,
    processor_fail,
)

import mptrace
from mptrace._participant.sources import FunnelHandler


def _processor_in_main(logger: Any, method_name: str, event_dict: dict) -> dict:
    return event_dict


_processor_in_main.__module__ = "__main__"


class _Processor:
    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        return event_dict


_MainProcessor = type("_MainProcessor", (_Processor,), {"__module__": "__main__"})


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tempfile's folder, for this test only: shows whether a socket folder was made."""
    folder = Path(tempfile.mkdtemp(prefix="mpcfg-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    for leftover in folder.iterdir():  # pragma: no cover - only when a test failed
        import shutil

        shutil.rmtree(leftover, ignore_errors=True)
    folder.rmdir()


def _jsonl(tmp_path: Path) -> str:
    return f"jsonl:{tmp_path / 'events.jsonl'}"


# Each entry: (kwargs given to init, words the message must contain).
MISTAKES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "unknown exporter": (
        {"exporters": ["syslog"]},
        ("Unknown exporter 'syslog'", "'console'", "'jsonl:PATH'"),
    ),
    "exporter not a string": ({"exporters": [3]}, ("not int", "'console'")),
    "exporters not iterable": ({"exporters": 3}, ("sequence of strings", "'console'")),
    "jsonl without path": (
        {"exporters": ["jsonl"]},
        ("needs a file path", "jsonl:run.jsonl"),
    ),
    "jsonl with empty path": ({"exporters": ["jsonl:"]}, ("needs a file path",)),
    "jsonl in missing folder": (
        {"exporters": ["jsonl:/nonexistent-mptrace/x/run.jsonl"]},
        ("does not exist", "existing folder"),
    ),
    "jsonl is a folder": ({"exporters": ["jsonl:/tmp"]}, ("is a folder", "file path")),
    "jsonl named twice": (
        {"exporters": ["jsonl:/tmp/mptrace-twice.jsonl"] * 2},
        ("only once",),
    ),
    "level name": (
        {"level": "VERBOSE"},
        ("Invalid level 'VERBOSE'", "DEBUG", "non-negative int"),
    ),
    "negative level": ({"level": -1}, ("Invalid level -1", "non-negative int")),
    "bool level": ({"level": True}, ("Invalid level True", "non-negative int")),
    "float level": ({"level": 10.0}, ("Invalid level 10.0", "non-negative int")),
    "list level": ({"level": []}, ("Invalid level []", "non-negative int")),
    "zero block_timeout": ({"block_timeout": 0}, ("block_timeout=", "greater than 0")),
    "negative block_timeout": (
        {"block_timeout": -1.5},
        ("block_timeout=", "greater than 0"),
    ),
    "nan block_timeout": (
        {"block_timeout": float("nan")},
        ("block_timeout=", "greater than 0"),
    ),
    "string block_timeout": (
        {"block_timeout": "5"},
        ("block_timeout=", "number of seconds"),
    ),
    "zero shutdown_timeout": (
        {"shutdown_timeout": 0},
        ("shutdown_timeout=", "greater than 0"),
    ),
    "negative shutdown_timeout": (
        {"shutdown_timeout": -3},
        ("shutdown_timeout=", "greater than 0"),
    ),
    "bool shutdown_timeout": (
        {"shutdown_timeout": True},
        ("shutdown_timeout=", "number of seconds"),
    ),
    "processor function in __main__": (
        {"processors": [_processor_in_main]},
        ("defined in __main__", "importable module"),
    ),
    "processor instance of a __main__ class": (
        {"processors": [_MainProcessor()]},
        ("defined in __main__", "importable module"),
    ),
    "non-callable processor": ({"processors": [42]}, ("42", "not callable")),
    "a single processor": (
        {"processors": processor_add_listener_pid},
        ("sequence of structlog processors",),
    ),
    "unpicklable processor": (
        {"processors": [lambda lg, m, e: e]},
        ("cannot be sent to the listener", "module-level function"),
    ),
    "redact a single string": ({"redact": "password"}, ("redact=",)),
    "redact non-string keys": ({"redact": [1, 2]}, ("redact=",)),
    "infinite block_timeout": ({"block_timeout": float("inf")}, ("block_timeout=",)),
}


def _init_expecting_failure(**kwargs: Any) -> None:
    """init(**kwargs); should it start a session after all, stop it fast and say so."""
    session = mptrace.init(**kwargs)
    psutil.Process(session.listener_pid).kill()  # its shutdown could take a while
    session.shutdown(timeout=0.1)
    pytest.fail(
        f"init({kwargs!r}) started a session instead of raising ConfigurationError"
    )


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


class TestMistakes:
    @pytest.mark.parametrize("name", list(MISTAKES))
    def test_a_mistake_fails_at_once_and_starts_nothing(
        self, name, tmp_path, private_tmp
    ):
        """ConfigurationError says what is allowed; no process, socket, handler or structlog change."""
        kwargs, words = MISTAKES[name]
        kwargs = {"exporters": [_jsonl(tmp_path)], **kwargs}
        before = _children()
        root_handlers = list(logging.getLogger().handlers)
        structlog_config = structlog.get_config()
        with pytest.raises(mptrace.ConfigurationError) as info:
            _init_expecting_failure(**kwargs)
        message = str(info.value)
        for word in words:
            assert word in message, (word, message)
        assert isinstance(info.value, ValueError)
        assert _children() <= before
        assert list(private_tmp.iterdir()) == []  # no socket folder
        assert logging.getLogger().handlers == root_handlers
        assert structlog.get_config() == structlog_config
        assert mptrace.get_session() is None
        assert not (tmp_path / "events.jsonl").exists()

    def test_after_a_mistake_a_correct_init_works(self, jsonl):
        """A refused configuration leaves nothing half-started in the way of the next init."""
        with pytest.raises(mptrace.ConfigurationError):
            mptrace.init(exporters=[f"jsonl:{jsonl}"], level="LOUD")
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            logging.getLogger("tests.config").warning("second try")
        assert logs_of(read_jsonl(jsonl), event="second try")


class TestLifecycle:
    def test_init_twice_raises(self, session, tmp_path):
        """A second init in the same process raises MptraceError and leaves the first running."""
        before = _children()
        with pytest.raises(mptrace.MptraceError, match="shutdown"):
            mptrace.init(exporters=[f"jsonl:{tmp_path / 'other.jsonl'}"])
        assert _children() == before
        assert mptrace.get_session() is session and session.active
        assert not (tmp_path / "other.jsonl").exists()

    def test_after_shutdown_init_works_again(self, tmp_path):
        """init, shutdown, init: the second session has its own listener and file."""
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        s1 = mptrace.init(exporters=[f"jsonl:{first}"])
        logging.getLogger("tests.config").warning("one")
        s1.shutdown()
        s2 = mptrace.init(exporters=[f"jsonl:{second}"])
        assert s2 is not s1 and s2.listener_pid != s1.listener_pid
        logging.getLogger("tests.config").warning("two")
        s2.shutdown()
        assert [e["event"] for e in logs_of(read_jsonl(first))] == ["one"]
        assert [e["event"] for e in logs_of(read_jsonl(second))] == ["two"]

    def test_shutdown_is_idempotent(self, session, jsonl):
        """shutdown twice, and mptrace.shutdown after it, do nothing more and raise nothing."""
        listener = psutil.Process(session.listener_pid)
        logging.getLogger("tests.config").warning("once")
        session.shutdown()
        assert not session.active
        assert not listener.is_running()
        size = jsonl.stat().st_size
        session.shutdown()
        mptrace.shutdown()
        session.shutdown(timeout=0.1)
        assert jsonl.stat().st_size == size
        assert mptrace.get_session() is None
        assert not [
            h for h in logging.getLogger().handlers if isinstance(h, FunnelHandler)
        ]

    def test_mptrace_shutdown_without_a_session(self):
        """mptrace.shutdown() with no session is a no-op."""
        assert mptrace.get_session() is None
        mptrace.shutdown()

    def test_with_block_shuts_down(self, jsonl):
        """Leaving a with block shuts the session down: listener gone, file complete."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as session:
            assert session.active and mptrace.get_session() is session
            listener = psutil.Process(session.listener_pid)
            logging.getLogger("tests.config").warning("inside")
        assert not session.active
        assert mptrace.get_session() is None
        assert not listener.is_running()
        assert logs_of(read_jsonl(jsonl), event="inside")

    def test_with_block_shuts_down_on_an_exception(self, jsonl):
        """An exception leaving the block still shuts down, and is not swallowed."""
        with (
            pytest.raises(KeyError),
            mptrace.init(exporters=[f"jsonl:{jsonl}"]) as session,
        ):
            logging.getLogger("tests.config").warning("before the error")
            raise KeyError("boom")
        assert not session.active
        assert logs_of(read_jsonl(jsonl), event="before the error")


IMPORT_CHECK = textwrap.dedent(
    """
    import atexit, json, logging, multiprocessing, os, signal, sys, threading

    # What mptrace's dependencies do when imported is theirs, not mptrace's.
    import multiprocessing.util, psutil, structlog

    before = {
        "threads": threading.active_count(),
        "atexit": atexit._ncallbacks(),
        "sigint": signal.getsignal(signal.SIGINT),
        "sigterm": signal.getsignal(signal.SIGTERM),
    }
    import mptrace

    print(json.dumps({
        "root_handlers": len(logging.getLogger().handlers),
        "root_level": logging.getLogger().level,
        "structlog_configured": structlog.is_configured(),
        "threads": threading.active_count() - before["threads"],
        "atexit": atexit._ncallbacks() - before["atexit"],
        "signals_same": signal.getsignal(signal.SIGINT) is before["sigint"]
            and signal.getsignal(signal.SIGTERM) is before["sigterm"],
        "children": len(psutil.Process().children(recursive=True)),
        "start_method": multiprocessing.get_start_method(allow_none=True),
        "excepthook": sys.excepthook is sys.__excepthook__,
        "session": mptrace.get_session() is None,
    }))
    """
)


class TestImport:
    def test_import_has_no_side_effects(self):
        """In a fresh interpreter, importing mptrace configures nothing and starts nothing."""
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_CHECK],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        import json

        state = json.loads(out.stdout)
        assert state == {
            "root_handlers": 0,
            "root_level": logging.WARNING,
            "structlog_configured": False,
            "threads": 0,
            "atexit": 0,
            "signals_same": True,
            "children": 0,
            "start_method": None,
            "excepthook": True,
            "session": True,
        }
        assert out.stderr == ""


class TestProcessors:
    def test_user_processor_runs_in_the_listener_on_every_log_event(
        self, start_method, jsonl
    ):
        """A processor from an importable module sees every log event, in the listener."""
        with mptrace.init(
            exporters=[f"jsonl:{jsonl}"], processors=[processor_add_listener_pid]
        ) as session:
            log_stdlib_and_structlog("parent")
            child = mptrace.get_context(start_method).Process(
                target=log_stdlib_and_structlog, args=("child",)
            )
            child.start()
            child.join(60)
            assert child.exitcode == 0
        events = read_jsonl(jsonl)
        records = [e for e in logs_of(events) if e.get("tag") in ("parent", "child")]
        assert {(e["pid"], e["logger"]) for e in records} == {
            (pid, logger)
            for pid in (os.getpid(), child.pid)
            for logger in ("tests.worker", "tests.structlog")
        }
        for event in records:
            assert event["processed_in"] == session.listener_pid
            assert event["processed_method"] == "info"
        user_records = [
            e for e in logs_of(events) if e.get("process") != "mptrace-listener"
        ]
        assert all("processed_in" in e for e in user_records)

    def test_processors_run_after_redaction(self, jsonl):
        """User processors see values already redacted."""
        with mptrace.init(
            exporters=[f"jsonl:{jsonl}"], processors=[processor_add_listener_pid]
        ):
            mptrace.get_logger("tests.config").info("secret", password="pw-value")
        (event,) = logs_of(read_jsonl(jsonl), event="secret")
        assert event["password"] == "[redacted]" and "processed_in" in event

    def test_drop_event_drops_only_that_event(self, jsonl):
        """A processor raising structlog.DropEvent drops the event; the others arrive."""
        with mptrace.init(
            exporters=[f"jsonl:{jsonl}"], processors=[processor_drop_marked]
        ):
            slog = mptrace.get_logger("tests.config")
            slog.info("dropped", drop=True)
            slog.info("kept", drop=False)
        events = read_jsonl(jsonl)
        assert not logs_of(events, event="dropped")
        assert len(logs_of(events, event="kept")) == 1

    def test_a_failing_processor_does_not_lose_the_event(self, jsonl):
        """A processor that raises: the event still arrives, saying which processor failed."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], processors=[processor_fail]):
            logging.getLogger("tests.config").warning("survives")
        (event,) = logs_of(read_jsonl(jsonl), event="survives")
        assert "processor failed on purpose" in event["mptrace_error"]
