"""Attribute names: the semantic-conventions registry's where one fits, ``mptrace.*`` else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import read_jsonl
from opentelemetry import trace
from workers import TrError, log_then_exit, tr_square, tr_traced_raises

import mptrace

#: The registry names mptrace writes; any other name in these namespaces is wrong.
REGISTRY = {
    "service.name", "service.instance.id", "host.name",
    "process.pid", "process.parent_pid", "process.exit.code",
    "process.runtime.name", "process.runtime.version",
    "telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version",
    "code.function.name", "code.stacktrace",
    "exception.type", "exception.message", "exception.stacktrace",
}  # fmt: skip
RESERVED = ("service.", "host.", "process.", "code.", "exception.", "thread.",
            "log.", "telemetry.", "os.", "exitcode", "signal", "crash")  # fmt: skip
DOC = Path(__file__).resolve().parents[2] / "docs" / "attributes.md"


def _names(events: list[dict]) -> set[str]:
    names: set[str] = set()
    for e in events:
        if e.get("kind") != "span":
            continue
        names |= set(e.get("resource") or {})
        names |= set(e.get("attributes") or {})
        for ev in e.get("events") or []:
            names |= set(ev.get("attributes") or {})
    return names


@pytest.fixture
def names(jsonl, start_method) -> set[str]:
    """Every attribute name of a run with a child, a failing child, pool tasks and an error."""
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        ctx = mptrace.get_context(start_method)
        with trace.get_tracer("t").start_as_current_span("root"):
            logging.getLogger("tests.semconv").warning("inside")
            p = ctx.Process(target=log_then_exit, args=(2, "raise"))
            p.start()
            p.join(60)
            with ctx.Pool(1) as pool:
                pool.map(tr_square, range(2))
            with pytest.raises(TrError):
                tr_traced_raises("boom", [])
    return _names(read_jsonl(jsonl))


class TestNames:
    def test_reserved_namespaces_hold_registry_names_only(self, names):
        """No made-up name under process., code., exception., log. ...; the rest is mptrace.*."""
        wrong = {n for n in names if n.startswith(RESERVED) and n not in REGISTRY}
        assert not wrong
        assert "exception.escaped" not in names and "code.namespace" not in names
        assert {n for n in names if "." not in n} == set()

    def test_task_spans_carry_their_resources(self, names):
        """A pool task's CPU and its worker's RSS change are on its span."""
        assert {"mptrace.task.cpu", "mptrace.task.memory.rss_delta",
                "mptrace.task.memory.rss"} <= names  # fmt: skip

    def test_every_name_is_in_the_attributes_table(self, names):
        """docs/attributes.md lists every attribute mptrace wrote."""
        doc = DOC.read_text()
        missing = {n for n in names if f"`{n}`" not in doc and not n.startswith(
            ("telemetry.sdk.", "mptrace.args."))}  # fmt: skip
        assert not missing
