"""The listener's end: with only mptrace's own sinks it skips the interpreter's
teardown (everything is flushed and closed by then); a sink of the program's
that leaves its output to the interpreter's end still gets it written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import sinks_for_tests
from conftest import read_jsonl

import mptrace
from mptrace.sinks import sink


def test_a_sink_that_writes_at_exit_still_writes(tmp_path: Path) -> None:
    out = tmp_path / "atexit.jsonl"
    with mptrace.init(exporters=[sink(sinks_for_tests.AtExitSink, str(out))]):
        for n in range(100):
            logging.getLogger("t").warning("line %d", n)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["event"] for e in lines if e.get("kind") == "log"] == [
        f"line {n}" for n in range(100)
    ]


def test_own_sinks_are_whole_after_the_quick_exit(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    with mptrace.init(exporters=[f"jsonl:{out}"]):
        for n in range(100):
            logging.getLogger("t").warning("line %d", n)
    logs = [e["event"] for e in read_jsonl(out) if e.get("kind") == "log"]
    assert logs == [f"line {n}" for n in range(100)]
