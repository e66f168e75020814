"""mptrace.Pool and mptrace.ProcessPoolExecutor: a span per call, a span per task.

Every test runs real workers under each start method and checks the spans
that arrive in the session's JSON lines.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from conftest import one_span as one
from conftest import spans_named as named
from opentelemetry import trace
from workers import tr_fail_on_two, tr_init, tr_mul, tr_pid, tr_square

import mptrace


def spans_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("kind") == "span"]


def hex_ids(span: Any) -> tuple[str, str]:
    """(trace_id, span_id) of a live SDK span, as the JSON lines spell them."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def process_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s["attributes"].get("mptrace.span") == "process"]


def check_links(tasks: list[dict[str, Any]], workers: list[dict[str, Any]]) -> None:
    """Each task links to the process span of the worker that sent it."""
    pid_of = {w["span_id"]: w["attributes"]["process.pid"] for w in workers}
    for task in tasks:
        [link] = task["links"]
        assert link["span_id"] in pid_of, task["name"]
        assert link["attributes"].get("mptrace.link") == "worker process"
        assert (
            pid_of[link["span_id"]]
            == task["attributes"]["process.pid"]
            == task["resource"]["process.pid"]
        )


class TestPoolCalls:
    def test_every_call_kind_makes_its_span_and_task_spans(
        self, start_method, session, jsonl
    ):
        """map, map_async, starmap, imap, imap_unordered, apply, apply_async: right names, parents, counts."""
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("root") as root:
            pool = mptrace.Pool(
                2,
                initializer=tr_init,
                initargs=("init-tag",),
                context=mptrace.get_context(start_method),
            )
            try:
                assert pool.map(tr_square, range(3)) == [0, 1, 4]
                assert pool.map_async(tr_square, [5]).get(60) == [25]
                assert pool.starmap(tr_mul, [(2, 3), (4, 5)]) == [6, 20]
                assert list(pool.imap(tr_square, range(2))) == [0, 1]
                assert sorted(pool.imap_unordered(tr_square, range(2))) == [0, 1]
                assert pool.apply(tr_square, (6,)) == 36
                assert pool.apply_async(tr_mul, (7, 8)).get(60) == 56
            finally:
                pool.close()  # and join: every worker starts, initializes and ends
                pool.join()
        session.shutdown()
        events = read_jsonl(jsonl)
        spans = spans_of(events)
        trace_id, root_id = hex_ids(root)
        assert {s["trace_id"] for s in spans} == {trace_id}
        maps = named(spans, "Pool.map workers.tr_square")
        assert len(maps) == 2
        submits = {
            "Pool.starmap workers.tr_mul": 2,
            "Pool.imap workers.tr_square": 2,
            "Pool.imap_unordered workers.tr_square": 2,
        }
        for span in maps + [one(spans, name) for name in submits]:
            assert span["parent_span_id"] == root_id, span["name"]
            assert span["attributes"]["mptrace.span"] == "submit"
            assert span["status"] == "unset"
        square_tasks = named(spans, "task workers.tr_square")
        mul_tasks = named(spans, "task workers.tr_mul")
        assert len(square_tasks) == 3 + 1 + 2 + 2 + 1
        assert len(mul_tasks) == 2 + 1

        def children_of(
            span: dict[str, Any], tasks: list[dict[str, Any]]
        ) -> list[dict[str, Any]]:
            return [t for t in tasks if t["parent_span_id"] == span["span_id"]]

        assert sorted(len(children_of(m, square_tasks)) for m in maps) == [1, 3]
        for name, count in submits.items():
            tasks = square_tasks if "tr_square" in name else mul_tasks
            assert len(children_of(one(spans, name), tasks)) == count, name
        # apply and apply_async: the task hangs directly under the span current at submission.
        direct = [t for t in square_tasks + mul_tasks if t["parent_span_id"] == root_id]
        assert sorted(t["name"] for t in direct) == [
            "task workers.tr_mul",
            "task workers.tr_square",
        ]
        workers = process_spans(spans)
        assert len(workers) == 2
        check_links(square_tasks + mul_tasks, workers)
        # The initializer ran in each worker, inside that worker's process span.
        inits = logs_of(events, event="worker initialized", tag="init-tag")
        assert len(inits) == 2
        by_pid = {w["attributes"]["process.pid"]: w for w in workers}
        for record in inits:
            assert record["span_id"] == by_pid[record["pid"]]["span_id"]

    def test_an_imap_not_read_to_the_end_still_ends_its_span(
        self, start_method, session, jsonl
    ):
        """imap / imap_unordered read for one item, then dropped: their spans still arrive, parents of their tasks."""
        with trace.get_tracer("tests").start_as_current_span("root"):
            pool = mptrace.Pool(2, context=mptrace.get_context(start_method))
            try:
                ordered = pool.imap(tr_square, range(3))
                assert next(ordered) == 0
                unordered = pool.imap_unordered(tr_square, range(3))
                assert next(unordered) in (0, 1, 4)
                del ordered, unordered
            finally:
                pool.close()
                pool.join()
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        tasks = named(spans, "task workers.tr_square")
        assert len(tasks) == 6
        for name in (
            "Pool.imap workers.tr_square",
            "Pool.imap_unordered workers.tr_square",
        ):
            span = one(spans, name)
            assert span["status"] != "error", span["status_message"]
            assert (
                len([t for t in tasks if t["parent_span_id"] == span["span_id"]]) == 3
            ), name


class TestMapTasksAreChunks:
    def test_a_map_task_span_covers_its_chunk_and_every_item_is_counted(
        self, start_method, session, jsonl
    ):
        """map with chunksize=10 over 40 items: 4 task spans of 10 items each, all under the map span."""
        with mptrace.Pool(2, context=mptrace.get_context(start_method)) as pool:
            assert pool.map(tr_square, range(40), chunksize=10) == [
                x * x for x in range(40)
            ]
            assert pool.starmap(tr_mul, [(i, 2) for i in range(9)], chunksize=4) == [
                2 * i for i in range(9)
            ]
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        the_map = one(spans, "Pool.map workers.tr_square")
        tasks = [
            s
            for s in named(spans, "task workers.tr_square")
            if s["parent_span_id"] == the_map["span_id"]
        ]
        assert [t["attributes"]["mptrace.task.items"] for t in tasks] == [
            10,
            10,
            10,
            10,
        ]
        star = one(spans, "Pool.starmap workers.tr_mul")
        star_tasks = [
            s
            for s in named(spans, "task workers.tr_mul")
            if s["parent_span_id"] == star["span_id"]
        ]
        assert sorted(t["attributes"]["mptrace.task.items"] for t in star_tasks) == [
            1,
            4,
            4,
        ]

    def test_get_context_pool_is_the_traced_pool(self, start_method, session, jsonl):
        """mptrace.get_context(method).Pool() is mptrace.Pool, so its tasks are traced."""
        with mptrace.get_context(start_method).Pool(2) as pool:
            assert isinstance(pool, mptrace.Pool)
            assert pool.map(tr_square, range(4), chunksize=1) == [0, 1, 4, 9]
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        assert len(named(spans, "task workers.tr_square")) == 4


class TestPoolTaskErrors:
    def test_a_raising_task_is_an_error_span_and_the_caller_gets_the_exception(
        self, start_method, session, jsonl
    ):
        """Task raises: its span has status error and the exception; map raises it with a RemoteTraceback."""
        with trace.get_tracer("tests").start_as_current_span("root"):
            with mptrace.Pool(2, context=mptrace.get_context(start_method)) as pool:
                with pytest.raises(ValueError, match="task failed on 2") as info:
                    pool.map(tr_fail_on_two, range(4), chunksize=1)
        cause = info.value.__cause__
        assert isinstance(cause, multiprocessing.pool.RemoteTraceback)
        assert "KeyError" in str(cause) and "the task's cause" in str(cause)
        session.shutdown()
        events = read_jsonl(jsonl)
        spans = spans_of(events)
        tasks = named(spans, "task workers.tr_fail_on_two")
        assert len(tasks) == 4
        failed = [t for t in tasks if t["status"] == "error"]
        assert len(failed) == 1
        [task] = failed
        assert task["status_message"] == "ValueError: task failed on 2"
        [exc] = [e for e in task["events"] if e["name"] == "exception"]
        assert exc["attributes"]["exception.type"] == "ValueError"
        assert exc["attributes"]["exception.message"] == "task failed on 2"
        stack = exc["attributes"]["exception.stacktrace"]
        assert "tr_fail_on_two" in stack and "the task's cause" in stack
        assert all(t["status"] == "unset" for t in tasks if t is not task)
        pool_map = one(spans, "Pool.map workers.tr_fail_on_two")
        assert pool_map["status"] == "error"
        # The worker logged the failure as an ERROR record, inside the task's span.
        [record] = logs_of(events, level="error", logger="mptrace.task")
        assert "task workers.tr_fail_on_two raised ValueError" == record["event"]
        assert record["exc"]["type"] == "ValueError"
        assert "the task's cause" in record["exc"]["traceback"]
        assert record["pid"] == task["attributes"]["process.pid"]
        assert (
            record["span_id"] == task["span_id"]
            and record["trace_id"] == task["trace_id"]
        )
        assert any(e["name"] == "log" for e in task["events"])


class TestMaxTasksPerChild:
    def test_every_task_has_a_span_and_every_worker_a_process_span(
        self, start_method, session, jsonl
    ):
        """maxtasksperchild=1: 4 tasks in 4 workers; replacements hang under the pool's span too."""
        with trace.get_tracer("tests").start_as_current_span("root") as root:
            pool = mptrace.Pool(
                2, maxtasksperchild=1, context=mptrace.get_context(start_method)
            )
            try:
                pids = pool.map(tr_pid, range(4), chunksize=1)
            finally:
                pool.close()
                pool.join()
        assert len(set(pids)) == 4
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        trace_id, root_id = hex_ids(root)
        tasks = named(spans, "task workers.tr_pid")
        assert len(tasks) == 4
        assert sorted(t["attributes"]["process.pid"] for t in tasks) == sorted(pids)
        workers = process_spans(spans)
        assert len(workers) > 2, "the pool started replacement workers"
        assert {w["attributes"]["process.pid"] for w in workers} >= set(pids)
        for w in workers:
            assert w["parent_span_id"] == root_id and w["trace_id"] == trace_id, w[
                "name"
            ]
            assert w["attributes"]["process.exit.code"] == 0
            assert w["status"] != "error"
        check_links(tasks, workers)


class TestPoolContextManager:
    def test_with_block_loses_no_task_span_and_no_worker_is_an_error(
        self, start_method, session, jsonl
    ):
        """`with Pool(2) as pool: pool.map(...)` terminates the workers: still every task span, no error."""
        items = 8
        with trace.get_tracer("tests").start_as_current_span("root"):
            with mptrace.Pool(2, context=mptrace.get_context(start_method)) as pool:
                assert pool.map(tr_square, range(items)) == [
                    i * i for i in range(items)
                ]
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        tasks = named(spans, "task workers.tr_square")
        assert len(tasks) == items
        workers = process_spans(spans)
        assert len(workers) == 2
        for w in workers:
            attrs = w["attributes"]
            assert w["status"] != "error", (w["name"], w["status_message"])
            assert attrs["process.exit.code"] in (0, -15), attrs
            if attrs["process.exit.code"] == -15:
                assert attrs["mptrace.terminated"] is True
                assert attrs["mptrace.exit.signal"] == "SIGTERM"
        check_links(tasks, workers)


class TestProcessPoolExecutor:
    def test_submit_and_map_hang_under_the_right_spans(
        self, start_method, session, jsonl
    ):
        """submit → task under the current span; map → a map span with a task per item."""
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("root") as root:
            with mptrace.ProcessPoolExecutor(
                max_workers=2, mp_context=multiprocessing.get_context(start_method)
            ) as ex:
                first = ex.submit(tr_square, 4)
                with tracer.start_as_current_span("inner") as inner:
                    second = ex.submit(tr_mul, 5, 6)
                    failing = ex.submit(tr_fail_on_two, 2)
                assert list(ex.map(tr_square, range(3))) == [0, 1, 4]
                assert first.result(60) == 16 and second.result(60) == 30
                assert isinstance(failing.exception(60), ValueError)
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        trace_id, root_id = hex_ids(root)
        _, inner_id = hex_ids(inner)
        assert {s["trace_id"] for s in spans} == {trace_id}
        squares = named(spans, "task workers.tr_square")
        assert len(squares) == 4
        assert [t["parent_span_id"] for t in squares].count(root_id) == 1, (
            "submit(tr_square, 4)"
        )
        [mul] = named(spans, "task workers.tr_mul")
        assert mul["parent_span_id"] == inner_id
        [fail] = named(spans, "task workers.tr_fail_on_two")
        assert fail["parent_span_id"] == inner_id
        assert fail["status"] == "error"
        assert any(e["name"] == "exception" for e in fail["events"])
        ex_map = one(spans, "ProcessPoolExecutor.map workers.tr_square")
        assert ex_map["parent_span_id"] == root_id
        assert ex_map["status"] == "unset"
        assert (
            len([t for t in squares if t["parent_span_id"] == ex_map["span_id"]]) == 3
        )
        workers = process_spans(spans)
        assert 1 <= len(workers) <= 2
        for w in workers:
            assert w["attributes"]["mptrace.start_method"] == start_method
            assert w["parent_span_id"] in (root_id, inner_id)
            assert w["status"] != "error", (w["name"], w["status_message"])
        check_links(squares + [mul, fail], workers)
