"""structlog events: typed values, bound context, contextvars, levels, names, exceptions."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from conftest import logs_of, read_jsonl
from workers import structlog_exception, structlog_levels, structlog_typed

import mptrace

TYPED = {
    "an_int": 42,
    "a_float": 2.5,
    "a_list": [1, "two", None, [3.0]],
    "a_tuple": [1, 2],
    "a_dict": {"a": {"b": [1, {"c": None}]}, "t": True},
    "yes": True,
    "no": False,
    "nothing": None,
    "bound_int": 7,
    "bound_list": ["a", 1],
}


@pytest.fixture(autouse=True)
def _clear_contextvars() -> Iterator[None]:
    """Tests here bind contextvars; none may leak into the next test."""
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def _run_child(method: str, target: Any, tag: str) -> int:
    child = mptrace.get_context(method).Process(target=target, args=(tag,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    return child.pid  # type: ignore[no-any-return]


def _check_typed(event: dict[str, Any], tag: str) -> None:
    for key, value in TYPED.items():
        assert event[key] == value, key
        assert type(event[key]) is type(value), key
    assert event["request_id"] == f"req-{tag}"
    assert event["attempt"] == 2
    assert event["logger"] == "tests.typed"


class TestValues:
    def test_values_arrive_as_json_values_from_the_parent(self, session, jsonl):
        """ints, floats, lists, nested dicts, bools and None stay themselves, not strings."""
        structlog_typed("parent")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="typed", tag="parent")
        _check_typed(event, "parent")
        assert event["pid"] == os.getpid()

    def test_values_arrive_as_json_values_from_a_child(
        self, start_method, session, jsonl
    ):
        """The same event logged in a child arrives with the same types."""
        pid = _run_child(start_method, structlog_typed, "child")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="typed", tag="child")
        _check_typed(event, "child")
        assert event["pid"] == pid

    def test_the_raw_line_holds_json_numbers_not_strings(self, session, jsonl):
        """In the file itself an int is written as a number and a bool as true."""
        mptrace.get_logger("tests.raw").info("raw", count=12345, flag=True, ratio=0.25)
        session.shutdown()
        (line,) = [ln for ln in jsonl.read_text("utf-8").splitlines() if '"raw"' in ln]
        assert '"count":12345' in line
        assert '"flag":true' in line
        assert '"ratio":0.25' in line

    def test_contextvars_bound_in_the_parent_arrive(self, session, jsonl):
        """structlog.contextvars bound values are merged into every event until cleared."""
        structlog.contextvars.bind_contextvars(request_id="r-1", user_id=9)
        mptrace.get_logger("tests.ctx").info("with context")
        structlog.contextvars.unbind_contextvars("user_id")
        mptrace.get_logger("tests.ctx").info("less context")
        structlog.contextvars.clear_contextvars()
        mptrace.get_logger("tests.ctx").info("no context")
        session.shutdown()
        events = read_jsonl(jsonl)
        (first,) = logs_of(events, event="with context")
        assert (first["request_id"], first["user_id"]) == ("r-1", 9)
        (second,) = logs_of(events, event="less context")
        assert second["request_id"] == "r-1" and "user_id" not in second
        (third,) = logs_of(events, event="no context")
        assert "request_id" not in third

    def test_key_named_like_a_core_field_is_kept_with_an_underscore(
        self, session, jsonl
    ):
        """A key-value named pid or level does not overwrite mptrace's own field."""
        mptrace.get_logger("tests.core").info("clash", pid="mine", seq="mine too")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="clash")
        assert event["pid"] == os.getpid() and event["pid_"] == "mine"
        assert type(event["seq"]) is int and event["seq_"] == "mine too"


class TestLevels:
    def test_debug_is_filtered_at_info_in_the_parent(self, jsonl):
        """With level=INFO, debug events (structlog and stdlib) do not arrive; info ones do."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
            structlog_levels("parent")
        events = read_jsonl(jsonl)
        assert not logs_of(events, event="hidden")
        shown = logs_of(events, event="shown", tag="parent")
        assert {e["logger"] for e in shown} == {"tests.levels", "tests.worker"}
        assert all(e["level"] == "info" for e in shown)

    def test_debug_is_filtered_at_info_in_a_child(self, start_method, jsonl):
        """The level travels to children: their debug events do not arrive either."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
            pid = _run_child(start_method, structlog_levels, "child")
        events = read_jsonl(jsonl)
        assert not logs_of(events, event="hidden")
        assert len(logs_of(events, event="shown", tag="child", pid=pid)) == 2

    def test_debug_arrives_at_debug(self, session, jsonl):
        """With level=DEBUG the same debug events do arrive, with level debug."""
        structlog_levels("debug")
        session.shutdown()
        hidden = logs_of(read_jsonl(jsonl), event="hidden", tag="debug")
        assert len(hidden) == 2 and all(e["level"] == "debug" for e in hidden)

    @pytest.mark.parametrize(
        "method, level",
        [
            ("warning", "warning"),
            ("warn", "warning"),
            ("error", "error"),
            ("critical", "critical"),
            ("info", "info"),
            ("debug", "debug"),
        ],
    )
    def test_level_names(self, session, jsonl, method, level):
        """Each structlog method gives its lowercase level name."""
        getattr(mptrace.get_logger("tests.levels"), method)("leveled")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="leveled")
        assert event["level"] == level


class TestNames:
    def test_logger_name_is_the_logger_field(self, session, jsonl):
        """get_logger("name") names the event's logger, bound or not."""
        mptrace.get_logger("my.component").info("named")
        mptrace.get_logger("my.other").bind(x=1).info("named bound")
        session.shutdown()
        events = read_jsonl(jsonl)
        (named,) = logs_of(events, event="named")
        assert named["logger"] == "my.component"
        (bound,) = logs_of(events, event="named bound")
        assert bound["logger"] == "my.other" and bound["x"] == 1

    def test_initial_values_of_get_logger_are_bound(self, session, jsonl):
        """get_logger(name, **values) binds the values to every event."""
        mptrace.get_logger("tests.initial", job="nightly", n=3).info("initial")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="initial")
        assert (event["job"], event["n"]) == ("nightly", 3)


class TestExceptions:
    def test_log_exception_in_the_parent(self, session, jsonl):
        """log.exception inside except: level error and an exc dict with the traceback."""
        structlog_exception("parent")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="it failed", tag="parent")
        self._check(event, "parent")

    def test_log_exception_in_a_child(self, start_method, session, jsonl):
        """The same from a child process."""
        pid = _run_child(start_method, structlog_exception, "child")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="it failed", tag="child")
        self._check(event, "child")
        assert event["pid"] == pid

    @staticmethod
    def _check(event: dict[str, Any], tag: str) -> None:
        assert event["level"] == "error"
        assert event["logger"] == "tests.exc"
        exc = event["exc"]
        assert set(exc) == {"type", "message", "traceback"}
        assert exc["type"] == "ValueError"
        assert exc["message"] == f"bad value {tag}"
        assert exc["traceback"].startswith("Traceback (most recent call last):")
        assert "in structlog_exception" in exc["traceback"]
        assert exc["traceback"].rstrip("\n").endswith(f"ValueError: bad value {tag}")
        assert "exc_info" not in event and "exception" not in event

    def test_exc_info_true_on_error(self, session, jsonl):
        """log.error(..., exc_info=True) inside except also carries the exception."""
        try:
            {}["missing"]
        except KeyError:
            mptrace.get_logger("tests.exc").error("lookup failed", exc_info=True)
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="lookup failed")
        assert event["level"] == "error"
        assert event["exc"]["type"] == "KeyError"

    def test_exception_outside_except_has_no_exc(self, session, jsonl):
        """log.exception with nothing being handled: an error event without exc."""
        mptrace.get_logger("tests.exc").exception("nothing raised")
        session.shutdown()
        (event,) = logs_of(read_jsonl(jsonl), event="nothing raised")
        assert event["level"] == "error"
        assert "exc" not in event

    def test_stdlib_and_structlog_agree(self, session, jsonl):
        """A stdlib logger.exception and a structlog one give the same exc shape."""
        try:
            raise ValueError("same")
        except ValueError:
            logging.getLogger("tests.exc").exception("std")
            mptrace.get_logger("tests.exc").exception("sl")
        session.shutdown()
        events = read_jsonl(jsonl)
        (std,) = logs_of(events, event="std")
        (sl,) = logs_of(events, event="sl")
        assert std["level"] == sl["level"] == "error"
        assert std["exc"]["type"] == sl["exc"]["type"] == "ValueError"
        assert std["exc"]["message"] == sl["exc"]["message"] == "same"
