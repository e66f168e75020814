"""``multiprocess`` (pathos's renamed copy of multiprocessing) participates
exactly as multiprocessing does, under every start method."""

from __future__ import annotations

import pytest
from conftest import logs_of, read_jsonl
from workers import log_item

import mptrace

multiprocess = pytest.importorskip("multiprocess")


def test_a_pool_delivers_every_record_and_task_span(start_method, jsonl):
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        with multiprocess.get_context(start_method).Pool(2) as pool:
            assert pool.map(log_item, range(4), chunksize=1) == [0, 1, 4, 9]
    events = read_jsonl(jsonl)
    records = logs_of(events, logger="tests.worker", event="item")
    assert sorted(r["i"] for r in records) == [0, 1, 2, 3]
    spans = [e for e in events if e["kind"] == "span"]
    [outer] = [s for s in spans if s["name"] == "Pool.map workers.log_item"]
    tasks = [s for s in spans if s["name"] == "task workers.log_item"]
    assert len(tasks) == 4
    assert {t["parent_span_id"] for t in tasks} == {outer["span_id"]}
    assert {r["span_id"] for r in records} == {t["span_id"] for t in tasks}
