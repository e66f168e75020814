"""@mptrace.traced: a span per call of a function, generator or coroutine function."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import workers
from conftest import logs_of, read_jsonl
from opentelemetry import trace
from workers import (
    TrError,
    TrHolder,
    tr_traced_add,
    tr_traced_coro,
    tr_traced_current,
    tr_traced_gen,
    tr_traced_named,
    tr_traced_raises,
    tr_traced_secret,
    tr_traced_task,
)

import mptrace

TESTS = Path(__file__).resolve().parents[1]
log = logging.getLogger("tests.traced")


def spans_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("kind") == "span"]


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, (
        f"{len(found)} spans named {name!r}; all: {sorted(s['name'] for s in spans)}"
    )
    return found[0]


def span_id_of(span: Any) -> str:
    return format(span.get_span_context().span_id, "016x")


def args_of(span: dict[str, Any]) -> dict[str, Any]:
    prefix = "mptrace.args."
    return {
        k[len(prefix) :]: v
        for k, v in span["attributes"].items()
        if k.startswith(prefix)
    }


class TestNamesAndAttributes:
    def test_name_defaults_to_the_qualified_name(self, session, jsonl):
        """No options: the span is named after __qualname__, under the current span; args not recorded."""
        with trace.get_tracer("tests").start_as_current_span("root") as root:
            assert tr_traced_add(2, 3) == 5
            assert TrHolder().method(5) == 4
            assert tr_traced_current() is True
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        add = one(spans, "tr_traced_add")
        assert add["parent_span_id"] == span_id_of(root)
        assert add["attributes"]["code.function.name"] == "workers.tr_traced_add"
        assert "code.namespace" not in add["attributes"]  # deprecated
        assert add["status"] == "unset"
        assert args_of(add) == {}, "record_args is off by default"
        method = one(spans, "TrHolder.method")
        assert method["attributes"]["code.function.name"] == "workers.TrHolder.method"
        assert method["parent_span_id"] == span_id_of(root)

    def test_name_attributes_and_recorded_arguments(self, session, jsonl):
        """name=, attributes= and record_args=True: all on the span; a non-scalar argument as its repr."""
        assert tr_traced_named(3, 4, label=["x", 1]) == 12
        session.shutdown()
        span = one(spans_of(read_jsonl(jsonl)), "custom span")
        attrs = span["attributes"]
        assert attrs["stage"] == 2 and attrs["team"] == "core"
        assert attrs["code.function.name"] == "workers.tr_traced_named"
        assert args_of(span) == {"a": 3, "b": 4, "label": "['x', 1]"}

    def test_record_args_false_records_no_argument(self, session, jsonl):
        """record_args=False: no mptrace.args.* attribute, and the value appears nowhere."""
        assert tr_traced_secret("hunter2-traced") == len("hunter2-traced")
        session.shutdown()
        with open(jsonl, encoding="utf-8") as f:
            text = f.read()
        span = one(spans_of(read_jsonl(jsonl)), "tr_traced_secret")
        assert args_of(span) == {}
        assert "hunter2-traced" not in text


class TestGeneratorsAndCoroutines:
    def test_generator_is_one_span_covering_its_iteration(self, session, jsonl):
        """A generator: one span from the first item to exhaustion; current only inside its body."""
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("consumer") as consumer:
            items = []
            for item in tr_traced_gen(3):
                log.info("consumer got", extra={"item": item})
                items.append(item)
        assert items == [0, 10, 20]
        session.shutdown()
        events = read_jsonl(jsonl)
        span = one(spans_of(events), "tr_traced_gen")
        assert span["parent_span_id"] == span_id_of(consumer)
        inside = logs_of(events, event="generating") + logs_of(
            events, event="generator done"
        )
        assert len(inside) == 4
        for record in inside:
            assert record["span_id"] == span["span_id"]
            assert span["start_ns"] <= record["ts"] <= span["end_ns"]
        for record in logs_of(events, event="consumer got"):
            assert record["span_id"] == span_id_of(consumer), (
                "the caller is not inside the generator's span"
            )
        assert [
            e["attributes"]["mptrace.log.message"]
            for e in span["events"]
            if e["name"] == "log"
        ] == [
            "generating",
            "generating",
            "generating",
            "generator done",
        ]

    def test_generator_closed_early_ends_its_span(self, session, jsonl):
        """A generator closed after one item: its span still ends, not as an error."""
        gen = tr_traced_gen(5)
        assert next(gen) == 0
        gen.close()
        session.shutdown()
        span = one(spans_of(read_jsonl(jsonl)), "tr_traced_gen")
        assert span["status"] == "unset"
        assert len([e for e in span["events"] if e["name"] == "log"]) == 1

    def test_coroutine_is_one_span_covering_its_await(self, session, jsonl):
        """asyncio.run(coroutine): one span, still current after the await."""
        assert asyncio.run(tr_traced_coro(1)) == 2
        session.shutdown()
        events = read_jsonl(jsonl)
        span = one(spans_of(events), "tr_traced_coro")
        [record] = logs_of(events, event="coroutine resumed")
        assert record["span_id"] == span["span_id"]
        assert span["start_ns"] <= record["ts"] <= span["end_ns"]
        assert span["status"] == "unset"


class TestExceptions:
    def test_exception_is_recorded_and_re_raised_unchanged(self, session, jsonl):
        """The very exception object propagates; the span has status error and an exception event."""
        box: list[BaseException] = []
        with pytest.raises(TrError) as info:
            tr_traced_raises("boom", box)
        assert info.value is box[0]
        assert info.value.args == ("boom",)
        assert any(entry.name == "tr_traced_raises" for entry in info.traceback)
        session.shutdown()
        span = one(spans_of(read_jsonl(jsonl)), "tr_traced_raises")
        assert span["status"] == "error"
        assert span["status_message"] == "TrError: boom"
        [exc] = [e for e in span["events"] if e["name"] == "exception"]
        assert exc["attributes"]["exception.type"] == "workers.TrError"
        assert exc["attributes"]["exception.message"] == "boom"
        assert "tr_traced_raises" in exc["attributes"]["exception.stacktrace"]


class TestPickling:
    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    def test_decorated_functions_pickle_by_reference(self, protocol):
        """pickle round-trips every decorated function to the very same object."""
        for func in (
            tr_traced_add,
            tr_traced_named,
            tr_traced_gen,
            tr_traced_coro,
            tr_traced_task,
        ):
            assert pickle.loads(pickle.dumps(func, protocol=protocol)) is func, (
                func,
                protocol,
            )

    def test_decorated_function_is_a_pool_task(self, start_method, session, jsonl):
        """Pool.map of a @traced function: each task span holds the function's own span."""
        with mptrace.Pool(2, context=mptrace.get_context(start_method)) as pool:
            assert pool.map(tr_traced_task, range(3)) == [0, 3, 6]
        session.shutdown()
        spans = spans_of(read_jsonl(jsonl))
        tasks = [s for s in spans if s["name"] == "task workers.tr_traced_task"]
        inner = [s for s in spans if s["name"] == "tr_traced_task"]
        assert len(tasks) == len(inner) == 3
        by_id = {t["span_id"]: t for t in tasks}
        for span in inner:
            task = by_id[span["parent_span_id"]]
            assert span["trace_id"] == task["trace_id"]
            assert span["resource"]["process.pid"] == task["attributes"]["process.pid"]


class TestWithoutProvider:
    def test_calls_straight_through_without_a_provider(self, tmp_path):
        """No session and no OpenTelemetry provider (a fresh interpreter): values, no span, same exception."""
        code = """
import asyncio, json, workers
from opentelemetry import trace
out = {
    "provider": type(trace.get_tracer_provider()).__name__,
    "add": workers.tr_traced_add(2, 3),
    "span_inside": workers.tr_traced_current(),
    "gen": list(workers.tr_traced_gen(2)),
    "coro": asyncio.run(workers.tr_traced_coro(1)),
    "method": workers.TrHolder().method(3),
}
box = []
try:
    workers.tr_traced_raises("plain", box)
except workers.TrError as exc:
    out["same_exception"] = exc is box[0]
print(json.dumps(out))
"""
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("OTEL_"):
                del env[key]
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out == {
            "provider": "ProxyTracerProvider",
            "add": 5,
            "span_inside": False,
            "gen": [0, 10],
            "coro": 2,
            "method": 2,
            "same_exception": True,
        }

    def test_the_module_imports_without_starting_anything(self):
        """Decorating at import time starts no session."""
        assert workers.tr_traced_add.__wrapped__(1, 1) == 2
        assert mptrace.get_session() is None


class TestAsyncGenerators:
    def test_an_async_generator_is_one_span_over_its_whole_iteration(
        self, session, jsonl
    ):
        """The span of an async generator starts at the call and ends after the last item."""
        import asyncio

        @mptrace.traced(name="agen")
        async def numbers(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i

        async def consume():
            return [i async for i in numbers(3)]

        assert asyncio.run(consume()) == [0, 1, 2]
        session.shutdown()
        spans = [
            e
            for e in read_jsonl(jsonl)
            if e.get("kind") == "span" and e["name"] == "agen"
        ]
        assert len(spans) == 1
        assert spans[0]["status"] == "unset"

    def test_an_exception_inside_an_async_generator_is_recorded_and_raised(
        self, session, jsonl
    ):
        """An exception raised mid-iteration ends the span as an error and reaches the caller."""
        import asyncio

        @mptrace.traced(name="agen-fails")
        async def failing():
            yield 1
            raise KeyError("gone")

        async def consume():
            return [i async for i in failing()]

        with pytest.raises(KeyError):
            asyncio.run(consume())
        session.shutdown()
        (span,) = [
            e
            for e in read_jsonl(jsonl)
            if e.get("kind") == "span" and e["name"] == "agen-fails"
        ]
        assert span["status"] == "error"
        assert [
            e["attributes"]["exception.type"]
            for e in span["events"]
            if e["name"] == "exception"
        ] == ["KeyError"]
