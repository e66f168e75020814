"""Guarantee: bad input gets a record, not a crash.

Every case in ``workers.bad_case_*`` logs something hostile (unpicklable
arguments, a ``__str__`` or ``__repr__`` that raises, 16 MiB strings, lone
surrogates, exceptions with unpicklable attributes, chains and groups) and is
followed by one sentinel record from the same process. Each start method runs
the cases once in a child, and the session's own process runs them at the same
time; the tests below read what arrived.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from workers import bad_input_cases, bad_input_run

import mptrace
from mptrace._participant.plain import MAX_VALUE_CHARS

HUGE = 16 * 1024 * 1024
WHO = ["child", "parent"]


@dataclass
class Run:
    """What one session that ran every case in a child and in the parent left."""

    events: list[dict[str, Any]]
    raw: bytes
    pids: dict[str, int]
    exitcode: int | None


@contextlib.contextmanager
def only_mptrace_handlers() -> Iterator[None]:
    """Leave mptrace alone with the records for the block: no handler on the root.

    pytest's own capture handlers re-raise formatting errors (on purpose, to
    fail tests with bad log calls); here the bad calls are the point, and a
    fork child would inherit pytest's handlers too.
    """
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = saved


def run_cases(method: str, folder: Path) -> Run:
    path = folder / "events.jsonl"
    session = mptrace.init(exporters=[f"jsonl:{path}"], level="DEBUG")
    try:
        with only_mptrace_handlers():
            child = mptrace.get_context(method).Process(target=bad_input_run)
            child.start()
            bad_input_run()  # the parent at the same time
            child.join(60)
    finally:
        session.shutdown()
    raw = path.read_bytes()
    return Run(
        read_jsonl(path),
        raw,
        {"child": child.pid, "parent": os.getpid()},
        child.exitcode,
    )


@pytest.fixture(scope="module")
def _runs() -> dict[str, Run]:
    return {}


@pytest.fixture
def run(
    start_method: str, _runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """The run of every case under *start_method*: made once, read by many tests."""
    if start_method not in _runs:
        _runs[start_method] = run_cases(
            start_method, tmp_path_factory.mktemp(f"bad-{start_method}")
        )
    return _runs[start_method]


def is_placeholder(text: str, how: str, cls: str, why: str) -> bool:
    """True when *text* is the placeholder for ``how()`` of a *cls* failing with *why*."""
    return text.startswith(f"<{how}() of ") and text.endswith(
        f"{cls} object failed: {why}>"
    )


def case_records(run: Run, who: str, case: str, expected: int) -> list[dict[str, Any]]:
    """The records *case* logged in *who*: exactly *expected*, then exactly one sentinel."""
    assert run.exitcode == 0, f"the child exited with {run.exitcode}"
    mine = logs_of(run.events, pid=run.pids[who], case=case)
    raised = [r for r in mine if r["event"] == "case raised"]
    assert not raised, raised[0].get("exc", {}).get("traceback")
    sentinels = [r for r in mine if r["event"] == "sentinel"]
    assert len(sentinels) == 1, f"{case} in the {who}: {len(sentinels)} sentinels"
    assert sentinels[0]["logged"] == expected
    records = [r for r in mine if r["event"] != "sentinel"]
    assert len(records) == expected, (
        f"{case} in the {who}: {len(records)} of {expected} records"
    )
    assert all(r["seq"] < sentinels[0]["seq"] for r in records)
    return records


@pytest.mark.parametrize("who", WHO)
class TestUnformattableArguments:
    def test_unpicklable_args_are_formatted_into_the_message(self, run, who):
        """A lock and a generator as %s arguments are formatted where they were logged."""
        (rec,) = case_records(run, who, "args_unpicklable", 1)
        assert rec["event"].startswith("lock <unlocked _thread.lock object at 0x")
        assert " gen <generator object " in rec["event"]
        assert rec["level"] == "info"

    def test_args_whose_str_raises_give_a_placeholder_naming_the_failure(
        self, run, who
    ):
        """A %s argument whose __str__ raises yields a placeholder, not a lost record."""
        (rec,) = case_records(run, who, "args_str_raises", 1)
        assert rec["event"].startswith("<unformattable message 'value %s' with args (")
        assert rec["event"].endswith(": RuntimeError: __str__ exploded>")

    def test_args_whose_repr_raises_give_a_placeholder_naming_the_failure(
        self, run, who
    ):
        """A %r argument whose __repr__ raises: the placeholder says repr() failed and why."""
        (rec,) = case_records(run, who, "args_repr_raises", 1)
        assert rec["event"].startswith("<unformattable message 'value %r' with args ")
        assert (
            "<repr() of tuple object failed: RuntimeError: __repr__ exploded>"
            in rec["event"]
        )
        assert rec["event"].endswith(": RuntimeError: __repr__ exploded>")


@pytest.mark.parametrize("who", WHO)
class TestUnpicklableFields:
    def test_extra_values_become_their_repr_or_a_placeholder(self, run, who):
        """extra= with a lock, a generator and a raising __repr__ arrives as text fields."""
        (rec,) = case_records(run, who, "extra_unpicklable", 1)
        assert rec["lock"].startswith("<unlocked _thread.lock object at 0x")
        assert rec["gen"].startswith("<generator object ")
        assert is_placeholder(
            rec["bad"], "repr", "BadRepr", "RuntimeError: __repr__ exploded"
        )

    def test_structlog_values_become_their_repr_or_a_placeholder(self, run, who):
        """structlog key-values and bound values that cannot cross arrive as text."""
        (rec,) = case_records(run, who, "structlog_kv", 1)
        assert rec["logger"] == "tests.bad"
        assert rec["bound_lock"].startswith("<unlocked _thread.lock object at 0x")
        assert rec["lock"].startswith("<unlocked _thread.lock object at 0x")
        assert rec["gen"].startswith("<generator object ")
        assert is_placeholder(
            rec["bad"], "repr", "BadRepr", "RuntimeError: __repr__ exploded"
        )

    def test_structlog_event_whose_str_raises_gives_a_placeholder(self, run, who):
        """A structlog event object whose __str__ raises: the event names the failure."""
        (rec,) = case_records(run, who, "structlog_event_str_raises", 1)
        assert is_placeholder(
            rec["event"], "str", "BadStr", "RuntimeError: __str__ exploded"
        )


@pytest.mark.parametrize("who", WHO)
class TestHugeStrings:
    MARKER = f"…[truncated {HUGE - MAX_VALUE_CHARS} chars]"

    def test_a_16_mib_message_arrives_truncated_with_a_marker(self, run, who):
        """A 16 MiB message arrives cut to MAX_VALUE_CHARS, with how many chars were cut."""
        records = case_records(run, who, "huge", 2)
        (rec,) = [r for r in records if r["logger"] == "tests.worker"]
        event = rec["event"]
        assert event[:MAX_VALUE_CHARS] == "x" * MAX_VALUE_CHARS
        assert event[MAX_VALUE_CHARS:] == self.MARKER

    def test_a_16_mib_structlog_value_arrives_truncated_with_a_marker(self, run, who):
        """A 16 MiB key-value is cut the same way; the event itself is untouched."""
        records = case_records(run, who, "huge", 2)
        (rec,) = [r for r in records if r["logger"] == "tests.bad"]
        assert rec["event"] == "huge"
        assert rec["payload"][:MAX_VALUE_CHARS] == "y" * MAX_VALUE_CHARS
        assert rec["payload"][MAX_VALUE_CHARS:] == self.MARKER


@pytest.mark.parametrize("who", WHO)
class TestSurrogatesAndBytes:
    def test_the_file_stays_valid_utf8(self, run, who):
        """Lone surrogates never reach the file as invalid UTF-8."""
        case_records(run, who, "surrogates", 2)
        run.raw.decode("utf-8")  # strict: raises on any invalid byte

    def test_lone_surrogates_read_back_as_the_same_string(self, run, who):
        """json.loads gives back the very string logged, message and fields alike."""
        for rec in case_records(run, who, "surrogates", 2):
            assert rec["event"] == "lone \udcff"
            assert rec["lone"] == "\udcff"

    def test_surrogateescape_text_reads_back_to_the_original_bytes(self, run, who):
        """Text decoded with surrogateescape re-encodes to exactly the bytes it came from."""
        for rec in case_records(run, who, "surrogates", 2):
            assert rec["escaped"] == "café \udcff\udcfe"
            assert (
                rec["escaped"].encode("utf-8", "surrogateescape")
                == b"caf\xc3\xa9 \xff\xfe"
            )

    def test_invalid_bytes_arrive_as_their_repr(self, run, who):
        """A bytes value that is not UTF-8 arrives as its repr, not as broken text."""
        for rec in case_records(run, who, "surrogates", 2):
            assert rec["raw"] == repr(b"\xff\xfe")


@pytest.mark.parametrize("who", WHO)
class TestExceptions:
    def test_exception_with_unpicklable_attributes(self, run, who):
        """An exception holding a lock and a generator arrives as type, message, traceback."""
        for rec in case_records(run, who, "exception_unpicklable", 2):
            assert rec["level"] == "error"
            exc = rec["exc"]
            assert exc["type"].endswith("LockedError")
            assert exc["message"] == "holding a lock"
            assert exc["traceback"].startswith("Traceback (most recent call last):")
            assert "LockedError: holding a lock" in exc["traceback"]
            assert rec["err"] == "LockedError('holding a lock')"

    def test_exception_whose_str_raises(self, run, who):
        """An exception whose __str__ raises still arrives, its message a placeholder."""
        (rec,) = case_records(run, who, "exception_str_raises", 1)
        exc = rec["exc"]
        assert exc["type"].endswith("UnprintableError")
        assert is_placeholder(
            exc["message"], "str", "UnprintableError", "RuntimeError: __str__ exploded"
        )
        assert "UnprintableError" in exc["traceback"]

    def test_explicit_chain_shows_both_exceptions(self, run, who):
        """raise ... from ...: the cause, the direct-cause line, then the effect."""
        (rec,) = case_records(run, who, "chain_explicit", 1)
        assert rec["exc"]["type"] == "RuntimeError"
        text = rec["exc"]["traceback"]
        cause = text.index("KeyError: 'first cause'")
        link = text.index(
            "The above exception was the direct cause of the following exception"
        )
        effect = text.index("RuntimeError: second effect")
        assert cause < link < effect

    def test_implicit_chain_shows_both_exceptions(self, run, who):
        """An exception raised while handling another: both, with the handling line."""
        (rec,) = case_records(run, who, "chain_implicit", 1)
        text = rec["exc"]["traceback"]
        first = text.index("KeyError: 'first context'")
        link = text.index(
            "During handling of the above exception, another exception occurred"
        )
        second = text.index("RuntimeError: second during handling")
        assert first < link < second

    @pytest.mark.skipif(
        sys.version_info < (3, 11), reason="exception groups are Python 3.11+"
    )
    def test_exception_group_shows_its_members(self, run, who):
        """An ExceptionGroup's traceback lists every member, from stdlib and structlog."""
        for rec in case_records(run, who, "exception_group", 2):
            assert rec["level"] == "error"
            assert rec["exc"]["type"] == "ExceptionGroup"
            text = rec["exc"]["traceback"]
            assert "ExceptionGroup: several (2 sub-exceptions)" in text
            assert "ValueError: member one" in text
            assert "TypeError: member two" in text

    def test_logger_exception_gives_an_error_with_the_traceback(self, run, who):
        """logger.exception (stdlib and structlog) gives level error and the traceback."""
        records = case_records(run, who, "logger_exception", 2)
        assert {r["logger"] for r in records} == {"tests.worker", "tests.bad"}
        for rec in records:
            assert rec["level"] == "error"
            assert rec["event"] == "division failed"
            assert rec["exc"]["type"] == "ZeroDivisionError"
            assert rec["exc"]["message"] == "division by zero"
            text = rec["exc"]["traceback"]
            assert "in bad_case_logger_exception" in text
            assert text.rstrip("\n").endswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize("who", WHO)
class TestOddValues:
    def test_an_int_too_long_for_decimal_text_arrives_in_hexadecimal(self, run, who):
        """10**5000 has more digits than an int may print; it arrives, exactly, in hex."""
        for rec in case_records(run, who, "huge_int", 2):
            text = rec["n"]
            assert text.startswith("<int of 16610 bits: 0x"), text[:40]
            assert int(text[len("<int of 16610 bits: ") : -1], 16) == 10**5000

    def test_an_event_bigger_than_a_frame_arrives_cut_with_a_marker(self, run, who):
        """70 MiB of fields: the record arrives without them, saying so, and
        the stream goes on (the sentinels and the no-loss test check that)."""
        (rec,) = logs_of(run.events, pid=run.pids[who], event="too big")
        assert "exceeds the 67108864 a frame holds" in rec["mptrace_error"]
        assert "f0, f1, f10" in rec["mptrace_error"]
        assert rec["level"] == "info" and "f0" not in rec

    def test_keys_of_mixed_types_keep_every_value(self, run, who):
        """``1`` and ``"1"`` as keys of one dict: both values arrive."""
        for rec in case_records(run, who, "mixed_keys", 2):
            assert rec["mixed"] == {
                "int:1": "int one",
                "1": "str one",
                "(2,)": "tuple",
            }

    def test_structlog_reserved_keys_keep_the_level_and_the_field(self, run, who):
        """``level=3`` is the program's field: the record stays a warning."""
        (rec,) = case_records(run, who, "structlog_reserved_keys", 1)
        assert rec["level"] == "warning"
        assert rec["level_"] == 3
        assert rec["pid_"] == "mine"
        assert rec["pid"] == run.pids[who]


@pytest.mark.parametrize("who", WHO)
class TestNothingBreaks:
    def test_every_case_is_followed_by_its_sentinel(self, run, who):
        """After every bad record its process goes on: one sentinel per case, in order."""
        assert run.exitcode == 0
        sentinels = logs_of(run.events, pid=run.pids[who], event="sentinel")
        assert [s["case"] for s in sentinels] == bad_input_cases()
        assert not logs_of(run.events, pid=run.pids[who], event="case raised")

    def test_no_record_is_lost_or_patched(self, run, who):
        """Sequence numbers run 1..N without a gap; no record needed the encoding safety net."""
        everything = [e for e in run.events if e.get("pid") == run.pids[who]]
        assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
        mine = logs_of(run.events, pid=run.pids[who])
        patched = [r for r in mine if "mptrace_error" in r]
        assert [r["event"] for r in patched] == ["too big"]  # cut on purpose
        lost = [
            e
            for e in run.events
            if "lost" in e or "lost from pid" in str(e.get("event"))
        ]
        assert not lost
