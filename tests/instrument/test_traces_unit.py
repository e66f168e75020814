"""traces="unit": each top-level unit of work is a trace of its own, linked
to the run's span, for services whose one trace would never end."""

from __future__ import annotations

import pytest
from conftest import read_jsonl
from workers import log_n, square

import mptrace
from mptrace.exceptions import ConfigurationError


def _spans(path) -> list[dict]:
    return [e for e in read_jsonl(path) if e.get("kind") == "span"]


def test_each_process_and_map_is_a_trace_linked_to_the_run(start_method, jsonl):
    """Two children and a Pool.map: three traces besides the run's, each
    linked to the run's span; the map's tasks stay in the map's trace."""
    with mptrace.init(exporters=[f"jsonl:{jsonl}"], traces="unit"):
        ctx = mptrace.get_context(start_method)
        children = [ctx.Process(target=log_n, args=(1, f"u{i}")) for i in range(2)]
        for p in children:
            p.start()
        for p in children:
            p.join(60)
        with ctx.Pool(2) as pool:
            assert pool.map(square, range(10)) == [x * x for x in range(10)]
    spans = _spans(jsonl)
    (run,) = [s for s in spans if s["attributes"].get("mptrace.span") == "run"]
    tops = [s for s in spans if s is not run and s.get("parent_span_id") is None]
    names = [s["name"] for s in tops]
    assert sum(n.startswith("Pool.map") for n in names) == 1, names
    assert {f"process {p.name}" for p in children} <= set(names), names
    assert len({s["trace_id"] for s in tops}) == len(tops)  # a trace each
    assert run["trace_id"] not in {s["trace_id"] for s in tops}
    for s in tops:
        assert {(link["trace_id"], link["span_id"]) for link in s["links"]} == {
            (run["trace_id"], run["span_id"])
        }, s["name"]
    (the_map,) = [s for s in tops if s["name"].startswith("Pool.map")]
    tasks = [s for s in spans if s["attributes"].get("mptrace.span") == "task"]
    assert tasks and {t["trace_id"] for t in tasks} == {the_map["trace_id"]}


def test_the_default_is_one_trace_per_run(jsonl):
    """Without the option every span is in the run's trace."""
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        p = mptrace.Process(target=log_n, args=(1, "one"))
        p.start()
        p.join(60)
    assert len({s["trace_id"] for s in _spans(jsonl)}) == 1


def test_a_bad_value_names_what_is_allowed(monkeypatch):
    with pytest.raises(ConfigurationError, match="'run' makes the whole run"):
        mptrace.init(exporters=[], traces="task")
    monkeypatch.setenv("MPTRACE_TRACES", "tasks")
    with pytest.raises(ConfigurationError, match="MPTRACE_TRACES"):
        mptrace.init(exporters=[])
