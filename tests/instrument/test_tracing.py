"""Tracing across processes: one trace per run, each span under the right parent.

What is checked is what arrives: the JSON lines of the session and, for the
tree, the spans a real OTLP/HTTP receiver decodes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from conftest import one_span as one
from conftest import spans_named as named
from opentelemetry import trace
from otlp_receiver import OtlpReceiver
from workers import tr_square, tr_start_grandchild, tr_start_grandchildren, tr_tree

import mptrace

TESTS = Path(__file__).resolve().parents[1]
ITEMS = 5
_STATUS = {0: "unset", 1: "ok", 2: "error"}


# -- helpers -------------------------------------------------------------------


def spans_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The span lines of a session's JSON lines."""
    return [e for e in events if e.get("kind") == "span"]


def from_receiver(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans as the OTLP receiver decoded them, in the JSON lines' shape."""
    return [
        {
            **s,
            "status": _STATUS[s["status_code"]],
            "events": [{**e, "ts": e["time_ns"]} for e in s["events"]],
        }
        for s in spans
    ]


def check_tree(
    spans: list[dict[str, Any]], out: dict[str, Any], method: str, items: int
) -> None:
    """The spans of ``workers.tr_tree`` form the one expected tree, and nothing else arrived."""
    trace_id = out["trace_id"]
    assert {s["trace_id"] for s in spans} == {trace_id}, (
        "every span is in the one trace"
    )

    # The session's span of the whole run holds the program's own spans.
    [run] = [s for s in spans if s["attributes"].get("mptrace.span") == "run"]
    assert run["parent_span_id"] is None
    root = one(spans, "root")
    assert root["span_id"] == out["root_span_id"]
    assert root["parent_span_id"] == run["span_id"]

    # The two mptrace.Process children: made and ended by the parent, under root.
    for (name, pid), code in zip(out["children"].items(), out["exitcodes"]):
        span = one(spans, f"process {name}")
        attrs = span["attributes"]
        assert span["parent_span_id"] == root["span_id"], name
        assert attrs["mptrace.span"] == "process"
        assert attrs["process.pid"] == pid
        assert attrs["process.parent_pid"] == out["parent_pid"]
        assert attrs["mptrace.start_method"] == method
        assert attrs["process.exit.code"] == code
        assert span["resource"]["process.pid"] == out["parent_pid"], (
            "made by the parent"
        )
        assert span["status"] == ("unset" if code == 0 else "error"), (
            name,
            span["status"],
        )
        assert [e["name"] for e in span["events"]][-1] == "exited"

    # The pool's workers: process spans under the span the pool was made in.
    workers = [
        s
        for s in spans
        if s["attributes"].get("mptrace.span") == "process"
        and "PoolWorker" in s["name"]
    ]
    assert len(workers) == 2, [s["name"] for s in workers]
    for w in workers:
        assert w["parent_span_id"] == root["span_id"], w["name"]
        assert w["attributes"]["mptrace.start_method"] == method
        assert w["status"] != "error", (w["name"], w["status"])
    worker_pid = {w["span_id"]: w["attributes"]["process.pid"] for w in workers}

    # Pool.map: a span in the parent, one task span per item in the workers.
    pool_map = one(spans, "Pool.map workers.tr_square")
    assert pool_map["parent_span_id"] == root["span_id"]
    assert pool_map["attributes"]["mptrace.span"] == "submit"
    assert pool_map["resource"]["process.pid"] == out["parent_pid"]
    tasks = named(spans, "task workers.tr_square")
    assert len(tasks) == items
    for task in tasks:
        assert task["parent_span_id"] == pool_map["span_id"]
        assert task["attributes"]["mptrace.span"] == "task"
        assert task["status"] == "unset"
        [link] = task["links"]
        assert link["trace_id"] == trace_id
        assert link["span_id"] in worker_pid, "linked to the worker that ran it"
        ran_in = worker_pid[link["span_id"]]
        assert task["attributes"]["process.pid"] == ran_in
        assert task["resource"]["process.pid"] == ran_in, "sent by the worker itself"

    assert len(spans) == 1 + 1 + 2 + 2 + 1 + items, sorted(s["name"] for s in spans)


def run_program(
    tmp_path: Path, exporters: list[str], method: str, items: int
) -> tuple[dict[str, Any], str]:
    """Run ``workers.tr_program`` in a fresh interpreter; its result and its stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    code = (
        "import json, sys, workers; "
        "print(json.dumps(workers.tr_program(json.loads(sys.argv[1]), sys.argv[2], 'svc', int(sys.argv[3]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(exporters), method, str(items)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


# -- the tree ------------------------------------------------------------------------


class TestTree:
    def test_one_trace_with_the_right_parents_in_json_lines(
        self, start_method, session, jsonl
    ):
        """root → process spans, pool worker spans and Pool.map → one task span per item, one trace."""
        out = tr_tree(start_method, ITEMS)
        assert out["results"] == [i * i for i in range(ITEMS)]
        assert out["exitcodes"] == [0, 3]
        session.shutdown()
        check_tree(spans_of(read_jsonl(jsonl)), out, start_method, ITEMS)

    def test_the_same_tree_arrives_over_otlp_http(self, start_method, tmp_path):
        """A program exporting to OTLP/HTTP: the receiver gets the very tree of the JSON lines, service.name set."""
        path = tmp_path / "program.jsonl"
        with OtlpReceiver(grpc=False) as rx:
            out, _ = run_program(
                tmp_path,
                ["otlp+http:" + rx.http_endpoint, f"jsonl:{path}"],
                start_method,
                ITEMS,
            )
            expected = 1 + 2 + 2 + 1 + ITEMS
            received = from_receiver(rx.wait_for_spans(expected, timeout=10))
        assert out["results"] == [i * i for i in range(ITEMS)]
        assert out["exitcodes"] == [0, 3]
        check_tree(received, out, start_method, ITEMS)
        for span in received:
            assert span["resource"].get("service.name") == "svc", (
                span["name"],
                span["resource"],
            )
            assert span["scope"], span["name"]
        lines = spans_of(read_jsonl(path))

        def shape(spans: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
            return {
                (s["name"], s["span_id"], s["parent_span_id"], s["status"])
                for s in spans
            }

        assert shape(received) == shape(lines)
        by_id = {s["span_id"]: s for s in lines}
        for span in received:  # events (lifecycle, logs) arrive the same way
            assert [e["name"] for e in span["events"]] == [
                e["name"] for e in by_id[span["span_id"]]["events"]
            ]


class TestServiceName:
    def test_a_second_session_names_its_own_service(self, tmp_path):
        """init(service_name="second") after a first session's shutdown: its spans say "second"."""
        path1, path2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
        code = f"""
import mptrace
from opentelemetry import trace
for name, path in (("first", {str(path1)!r}), ("second", {str(path2)!r})):
    session = mptrace.init(exporters=["jsonl:" + path], service_name=name)
    with trace.get_tracer("tests").start_as_current_span("work in " + name):
        pass
    session.shutdown()
"""
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        for name, path in (("first", path1), ("second", path2)):
            span = one(spans_of(read_jsonl(path)), f"work in {name}")
            assert span["resource"]["service.name"] == name


# -- where a pool's spans hang ---------------------------------------------------------


class TestStaleParent:
    def test_tasks_follow_the_submitting_span_and_workers_the_creating_span(
        self, start_method, session, jsonl
    ):
        """Pool made inside A, map called inside B: tasks under B's Pool.map, workers under A."""
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("A") as a:
            pool = mptrace.Pool(2, context=mptrace.get_context(start_method))
        try:
            with tracer.start_as_current_span("B") as b:
                assert pool.map(tr_square, range(4)) == [0, 1, 4, 9]
            with tracer.start_as_current_span("C") as c:
                assert pool.apply(tr_square, (7,)) == 49
        finally:
            pool.close()
            pool.join()
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        ids = {
            name: format(s.get_span_context().span_id, "016x")
            for name, s in (("A", a), ("B", b), ("C", c))
        }
        traces = {
            name: format(s.get_span_context().trace_id, "032x")
            for name, s in (("A", a), ("B", b), ("C", c))
        }
        workers = [s for s in spans if "PoolWorker" in s["name"]]
        assert len(workers) == 2
        for w in workers:
            assert w["parent_span_id"] == ids["A"], (
                "a worker hangs under the span the pool was made in"
            )
            assert w["trace_id"] == traces["A"]
        pool_map = one(spans, "Pool.map workers.tr_square")
        assert pool_map["parent_span_id"] == ids["B"]
        tasks = named(spans, "task workers.tr_square")
        assert len(tasks) == 5
        mapped = [t for t in tasks if t["parent_span_id"] == pool_map["span_id"]]
        applied = [t for t in tasks if t["parent_span_id"] == ids["C"]]
        assert len(mapped) == 4 and len(applied) == 1, [
            t["parent_span_id"] for t in tasks
        ]
        assert {t["trace_id"] for t in mapped} == {traces["B"]}
        assert applied[0]["trace_id"] == traces["C"]
        worker_ids = {w["span_id"] for w in workers}
        for t in tasks:  # still linked to the worker's span, across traces
            assert [link["span_id"] for link in t["links"]][0] in worker_ids


class TestNestedChildren:
    def test_grandchild_span_hangs_under_a_span_of_the_child(
        self, start_method, session, jsonl
    ):
        """child → @traced span in the child → grandchild's process span, all in the root's trace."""
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("root") as root:
            p = mptrace.get_context(start_method).Process(
                target=tr_start_grandchild, args=(start_method,), name="child"
            )
            p.start()
            p.join(60)
        assert p.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        spans = spans_of(events)
        trace_id = format(root.get_span_context().trace_id, "032x")
        assert {s["trace_id"] for s in spans} == {trace_id}
        root_span = one(spans, "root")
        child = one(spans, "process child")
        assert child["parent_span_id"] == root_span["span_id"]
        assert child["attributes"]["process.pid"] == p.pid
        in_child = one(spans, "start grandchild")
        assert in_child["parent_span_id"] == child["span_id"]
        assert in_child["resource"]["process.pid"] == p.pid, "made in the child"
        grandchild = one(spans, "process grandchild")
        assert grandchild["parent_span_id"] == in_child["span_id"]
        assert grandchild["resource"]["process.pid"] == p.pid, (
            "made and ended by the child"
        )
        assert grandchild["attributes"]["process.parent_pid"] == p.pid
        assert grandchild["attributes"]["process.exit.code"] == 0
        assert grandchild["attributes"]["mptrace.start_method"] == start_method
        gpid = grandchild["attributes"]["process.pid"]
        [record] = logs_of(events, event="squaring", pid=gpid)
        assert record["trace_id"] == trace_id
        assert record["span_id"] == grandchild["span_id"]
        assert record["ppid"] == p.pid

    def test_every_grandchild_span_arrives_when_the_child_ends_right_after_join(
        self, start_method, session, jsonl
    ):
        """A child joins its 4 children and returns at once: all 4 process spans still arrive."""
        with trace.get_tracer("tests").start_as_current_span("root"):
            p = mptrace.get_context(start_method).Process(
                target=tr_start_grandchildren,
                args=(start_method, 4),
                name="parent-of-four",
            )
            p.start()
            p.join(60)
        assert p.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        spans = spans_of(events)
        child = one(spans, "process parent-of-four")
        for i in range(4):
            span = one(spans, f"process grandchild-{i}")
            assert span["parent_span_id"] == child["span_id"]
            assert span["attributes"]["process.exit.code"] == 0
        exited = [
            e
            for e in events
            if e.get("kind") == "lifecycle" and e["transition"] == "exited"
        ]
        assert len(exited) == 5, "the child's and its four children's"


# -- logs inside spans ---------------------------------------------------------------------


class TestLogsInSpans:
    def test_logs_inside_a_span_become_its_events_and_carry_its_ids(
        self, session, jsonl
    ):
        """stdlib and structlog records made in a span: "log" events on it; ids on the JSON line."""
        tracer = trace.get_tracer("tests")
        log = logging.getLogger("tests.tracing")
        with tracer.start_as_current_span("work") as span:
            log.warning("inside %s", "the span")
            mptrace.get_logger("tests.tracing.s").info("structlog inside", n=1)
            try:
                raise ZeroDivisionError("nothing to divide")
            except ZeroDivisionError:
                log.exception("failed inside")
        log.warning("outside any span")
        session.shutdown()
        events = read_jsonl(jsonl)
        ctx = span.get_span_context()
        trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        for message in ("inside the span", "structlog inside", "failed inside"):
            [record] = logs_of(events, event=message)
            assert record["trace_id"] == trace_id and record["span_id"] == span_id, (
                message
            )
        # Outside the program's spans, a record belongs to the run's span,
        # which is not given an event per record (it would gather every line).
        [outside] = logs_of(events, event="outside any span")
        [run] = [
            s for s in spans_of(events) if s["attributes"].get("mptrace.span") == "run"
        ]
        assert (outside["trace_id"], outside["span_id"]) == (
            run["trace_id"],
            run["span_id"],
        )
        assert [e for e in run["events"] if e["name"] == "log"] == []
        work = one(spans_of(events), "work")
        logged = [e for e in work["events"] if e["name"] == "log"]
        assert [e["attributes"]["mptrace.log.message"] for e in logged] == [
            "inside the span",
            "structlog inside",
            "failed inside",
        ]
        assert [e["attributes"]["mptrace.log.level"] for e in logged] == [
            "warning",
            "info",
            "error",
        ]
        assert logged[0]["attributes"]["mptrace.log.logger"] == "tests.tracing"
        assert logged[2]["attributes"]["exception.type"] == "ZeroDivisionError"
        assert logged[2]["attributes"]["exception.message"] == "nothing to divide"

    def test_logs_in_children_carry_the_span_they_were_made_in(
        self, start_method, session, jsonl
    ):
        """A pool task's log is an event of its task span; a Process child's log carries its process span."""
        ctx = mptrace.get_context(start_method)
        with trace.get_tracer("tests").start_as_current_span("root"):
            p = ctx.Process(target=tr_square, args=(11,), name="logger-child")
            p.start()
            with mptrace.Pool(1, context=ctx) as pool:
                assert pool.map(tr_square, [2, 3]) == [4, 9]
            p.join(60)
        assert p.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        spans = spans_of(events)
        for task in named(spans, "task workers.tr_square"):
            [event] = [e for e in task["events"] if e["name"] == "log"]
            assert event["attributes"]["mptrace.log.message"] == "squaring"
            [record] = [
                r
                for r in logs_of(events, event="squaring")
                if r.get("span_id") == task["span_id"]
            ]
            assert record["trace_id"] == task["trace_id"]
            assert record["pid"] == task["attributes"]["process.pid"]
        child = one(spans, "process logger-child")
        [record] = logs_of(events, event="squaring", pid=p.pid)
        assert record["span_id"] == child["span_id"]
        assert record["trace_id"] == child["trace_id"]


# -- an OTLP receiver that is not there ----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestOtlpUnavailable:
    @pytest.mark.parametrize("receiver", ["refusing", "nothing listening"])
    def test_program_is_unchanged_and_the_drops_are_counted(self, receiver, tmp_path):
        """A receiver that refuses or is absent: same results and exit codes, prompt shutdown, drops told."""
        path = tmp_path / "program.jsonl"
        if receiver == "refusing":
            with OtlpReceiver(grpc=False, refuse=True) as rx:
                out, err = run_program(
                    tmp_path,
                    ["otlp+http:" + rx.http_endpoint, f"jsonl:{path}"],
                    "fork",
                    3,
                )
                assert rx.refused_count >= 1
                assert rx.spans() == []
        else:
            endpoint = f"http://127.0.0.1:{_closed_port()}"
            out, err = run_program(
                tmp_path, ["otlp+http:" + endpoint, f"jsonl:{path}"], "fork", 3
            )
        assert out["results"] == [0, 1, 4]
        assert out["exitcodes"] == [0, 3]
        assert out["shutdown_s"] < 8.0, out["shutdown_s"]
        events = read_jsonl(path)
        spans, logs = spans_of(events), logs_of(events)
        assert len(spans) == 1 + 1 + 2 + 2 + 1 + 3, (
            "the JSON lines still get every span"
        )
        # "N spans dropped by ..." or "N events (S spans, L log records) dropped by ..."
        [summary] = [
            line
            for line in err.splitlines()
            if "at shutdown" in line and "dropped" in line
        ]
        counts = dict(
            (what, int(n))
            for n, what in re.findall(r"(\d+) (spans|log records)\b", summary)
        )
        assert counts.get("spans") == len(spans), summary
        assert counts.get("log records", 0) == len(logs), summary
