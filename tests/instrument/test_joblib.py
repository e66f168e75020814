"""joblib's ``Parallel``: a task span per batch, in the worker that ran it,
under the span current at the call; the block does not wait for loky's idle
workers. joblib's default backend (loky) starts its workers its own way, so
only the ``multiprocessing`` backend runs under each start method."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from opentelemetry import trace
from workers import log_item, tr_fail_on_two

import mptrace

joblib = pytest.importorskip("joblib")
from joblib._parallel_backends import MultiprocessingBackend  # noqa: E402
from joblib.externals.loky import reusable_executor  # noqa: E402

TASK = "task workers.log_item"


def hex_id(span: Any) -> str:
    return format(span.get_span_context().span_id, "016x")


def check(events: list[dict[str, Any]], parent: str, spans: int | None) -> list[Any]:
    """8 records, each inside a task span; the task spans cover the 8 calls,
    each a child of *parent*, all in one trace. Returns the task spans."""
    records = logs_of(events, logger="tests.worker", event="item")
    assert sorted(r["i"] for r in records) == list(range(8))
    tasks = [e for e in events if e.get("kind") == "span" and e["name"] == TASK]
    if spans is not None:
        assert len(tasks) == spans
    assert sum(t["attributes"]["mptrace.task.items"] for t in tasks) == 8
    for t in tasks:
        assert t["parent_span_id"] == parent
        assert t["attributes"]["mptrace.span"] == "task"
        assert t["attributes"]["code.function.name"] == "workers.log_item"
    assert {r["span_id"] for r in records} <= {t["span_id"] for t in tasks}
    assert len({e["trace_id"] for e in tasks + records}) == 1
    return tasks


def loky_workers() -> list[Any]:
    executor = reusable_executor._executor
    return list(executor._processes.values()) if executor is not None else []


def shut_loky_down() -> None:
    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True)


@pytest.fixture(autouse=True)
def _fresh_loky_workers() -> Iterator[None]:
    """loky keeps its workers for the next call; workers that joined another
    test's session would send this test's records to a listener long gone."""
    shut_loky_down()
    yield
    shut_loky_down()


def test_loky_gives_a_task_span_per_call_under_the_calling_span(jsonl, capfd):
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        with trace.get_tracer("tests").start_as_current_span("outer") as outer:
            squares = joblib.Parallel(n_jobs=2, batch_size=1)(
                joblib.delayed(log_item)(i) for i in range(8)
            )
        assert squares == [i * i for i in range(8)]
    # The block ended while loky's reusable workers still lived, idle.
    workers = loky_workers()
    try:
        assert workers and any(p.is_alive() for p in workers), "they were waited for"
    finally:
        shut_loky_down()
    err = capfd.readouterr().err
    events = read_jsonl(jsonl)
    tasks = check(events, hex_id(outer), spans=8)
    # A worker loky was still starting when the block ended (a slow spawn on
    # a loaded machine) joins a session that is gone and says so on its
    # stderr; it ran no call. Nothing else speaks.
    late = set(re.findall(r"process (\d+) writes its records", err))
    assert not late & {str(t["attributes"]["process.pid"]) for t in tasks}
    for line in err.splitlines():
        assert "mptrace" not in line or any(pid in line for pid in late), line
    # loky's workers join once, as its processes, not also as programs of
    # their own; nor does loky's resource tracker.
    names = {(e["pid"], e["process"]) for e in events if e["kind"] == "lifecycle"}
    assert {pid for pid, name in names if name == "MainProcess"} == {os.getpid()}
    # Each span was made in the loky worker that ran the call.
    assert {t["attributes"]["process.pid"] for t in tasks} <= {p.pid for p in workers}


def test_loky_batches_are_spans_under_the_runs_span(session, jsonl):
    """joblib sizes batches itself; each is one span that counts its calls."""
    assert joblib.Parallel(n_jobs=2)(joblib.delayed(log_item)(i) for i in range(8)) == [
        i * i for i in range(8)
    ]
    mptrace.shutdown()
    events = read_jsonl(jsonl)
    [run] = [e for e in events if e.get("kind") == "span" and not e["parent_span_id"]]
    check(events, run["span_id"], spans=None)


def test_the_multiprocessing_backend_gives_the_same_spans(start_method, jsonl):
    """Not the pool's own span around joblib's wrapper: one span per batch,
    named after the function, under the calling span."""
    backend = MultiprocessingBackend(context=multiprocessing.get_context(start_method))
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        with trace.get_tracer("tests").start_as_current_span("outer") as outer:
            squares = joblib.Parallel(n_jobs=2, backend=backend, batch_size=1)(
                joblib.delayed(log_item)(i) for i in range(8)
            )
        assert squares == [i * i for i in range(8)]
    events = read_jsonl(jsonl)
    check(events, hex_id(outer), spans=8)
    tasks = [
        e for e in events if e.get("kind") == "span" and e["name"].startswith("task")
    ]
    assert len(tasks) == 8, "a batch was traced twice"


def test_threads_give_a_span_per_batch_in_their_thread(jsonl):
    """``prefer="threads"``: no pickling, but joblib's callback thread
    dispatches too, where no span is current; the spans still land under
    the calling span."""
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        with trace.get_tracer("tests").start_as_current_span("outer") as outer:
            squares = joblib.Parallel(n_jobs=2, prefer="threads", batch_size=1)(
                joblib.delayed(log_item)(i) for i in range(8)
            )
        assert squares == [i * i for i in range(8)]
    check(read_jsonl(jsonl), hex_id(outer), spans=8)


def test_a_failing_call_fails_its_batchs_span_and_reaches_the_program(session, jsonl):
    with pytest.raises(ValueError, match="task failed on 2"):
        joblib.Parallel(n_jobs=2, batch_size=1)(
            joblib.delayed(tr_fail_on_two)(i) for i in range(4)
        )
    mptrace.shutdown()
    tasks = [
        e
        for e in read_jsonl(jsonl)
        if e.get("kind") == "span" and e["name"] == "task workers.tr_fail_on_two"
    ]
    [failed] = [t for t in tasks if t["status"] == "error"]
    assert "ValueError: task failed on 2" in failed["status_message"]
