"""Units of the listener and the schema: codec, frames, router, process table.

Plus the two fixes that came with cutting the package: errors are counted by
the level the frame says, never by searching the JSON, and a second start()
starts nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import pytest
import workers
from conftest import logs_of

import mptrace
from mptrace._listener import router as _listener
from mptrace._listener import transport as _transport
from mptrace._listener.proctable import ROWS_KEPT, ProcessTable
from mptrace._schema import events as _events
from mptrace._schema.config import ListenerConfig
from mptrace._schema.otel import _Resources, span_from_dict
from mptrace.sinks import SinkSpec

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class TestSpanCodec:
    def test_a_span_round_trips_through_a_dict(self):
        """span → dict → ReadableSpan keeps name, ids, times, status, events, links."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from opentelemetry.trace import Link, Status, StatusCode

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("parent") as parent:
            link = Link(parent.get_span_context(), {"why": "test"})
            with tracer.start_as_current_span(
                "child", links=[link], attributes={"n": 3, "xs": [1, 2]}
            ) as child:
                child.add_event("tick", {"i": 1})
                child.set_status(Status(StatusCode.ERROR, "bad"))
        original = exporter.get_finished_spans()[0]
        event = _events.span_to_dict(original, {"service.name": "s"}, "P", lambda v: v)
        assert _events.flags_of("span", event) == 0
        again = span_from_dict(event, _Resources({}))
        assert again.name == "child"
        assert again.context.trace_id == original.context.trace_id
        assert again.context.span_id == original.context.span_id
        assert again.parent.span_id == original.parent.span_id
        assert (again.start_time, again.end_time) == (
            original.start_time,
            original.end_time,
        )
        assert again.status.status_code is StatusCode.ERROR
        assert again.status.description == "bad"
        assert dict(again.attributes) == {"n": 3, "xs": (1, 2)}
        assert [(e.name, dict(e.attributes)) for e in again.events] == [
            ("tick", {"i": 1})
        ]
        assert again.links[0].context.span_id == parent.get_span_context().span_id
        assert again.resource.attributes["service.name"] == "s"


class TestFrames:
    def test_the_header_carries_the_level_and_the_process_span_bit(self):
        """flags: a log's level rank; a span's process bit; nothing for others."""
        log = {"kind": "log", "level": "error", "seq": 1}
        span = {"kind": "span", "attributes": {"mptrace.span": "process"}, "seq": 2}
        other = {"kind": "span", "attributes": {"mptrace.span": "task"}, "seq": 3}
        frames = _transport.FrameReader().feed(
            b"".join(_events.encode(e) for e in (log, span, other))
        )
        flags = [_events.PREFIX.unpack_from(f)[1] for f in frames]
        assert flags == [_events.ERROR_RANK, _events.PROCESS_SPAN, 0]

    def test_a_large_frame_in_small_pieces_arrives_whole(self):
        """A 32 MiB frame fed in 256 KiB reads comes out once, byte for byte."""
        body = _events.encode({"kind": "log", "event": "x" * (32 << 20), "seq": 1})
        reader = _transport.FrameReader()
        got = []
        for start in range(0, len(body), 256 * 1024):
            got += reader.feed(body[start : start + 256 * 1024])
        assert len(got) == 1 and bytes(got[0]) == body[4:]
        assert reader.pending == 0

    def test_signal_names(self):
        """-9 is SIGKILL; 0, positive codes and None are no signal."""
        assert _events.signal_name(-9) == "SIGKILL"
        assert [_events.signal_name(c) for c in (0, 3, None)] == [None, None, None]


class TestProcessTable:
    def test_errors_are_counted_by_the_rank_in_the_header(self):
        """on_log counts error and critical ranks only, for known pids."""
        table = ProcessTable()
        for rank in range(6):
            table.on_log(7, rank)
        table.on_log("?", _events.ERROR_RANK)
        assert table.rows[7]["errors"] == 2

    def test_the_childs_account_completes_its_span(self):
        """running and finished (with the exception) become events of the span."""
        table = ProcessTable()
        table.on_lifecycle({"transition": "running", "target_pid": 5, "ts": 2})
        table.on_lifecycle(
            {
                "transition": "finished",
                "target_pid": 5,
                "ts": 3,
                "outcome": "raised",
                "exc": {"type": "ValueError", "message": "no", "traceback": "tb"},
            }
        )
        span = {"attributes": {"process.pid": 5}, "events": [{"name": "x", "ts": 1}]}
        table.complete_span(span)
        assert [e["name"] for e in span["events"]] == [
            "x",
            "running",
            "finished",
            "exception",
        ]
        assert span["status"] == "error"
        assert span["events"][-1]["attributes"]["exception.stacktrace"] == "tb"

    @staticmethod
    def _run_child(table, pid, *, raised=False, killed=False, ts=0):
        """What the parent and the child say of one child, then its span."""
        table.on_lifecycle({"transition": "started", "target_pid": pid, "ts": ts + 1})
        if not killed:
            finished = {"transition": "finished", "target_pid": pid, "ts": ts + 2}
            finished["outcome"] = "raised" if raised else "returned"
            if raised:
                finished["exc"] = {
                    "type": "ValueError",
                    "message": "old",
                    "traceback": "",
                }
            table.on_lifecycle(finished)
        exited = {"transition": "exited", "target_pid": pid, "ts": ts + 3}
        exited.update(
            {"exitcode": -9, "signal": "SIGKILL"}
            if killed
            else {"exitcode": int(raised)}
        )
        table.on_lifecycle(exited)
        span = {"attributes": {"process.pid": pid}, "events": []}
        table.complete_span(span)
        return span

    def test_a_reused_pid_is_a_new_process(self):
        """A SIGKILLed child that got an earlier child's pid shows its own end,
        not the earlier child's exception; the table has a row for each."""
        table = ProcessTable()
        first = self._run_child(table, 5, raised=True)
        assert first["status"] == "error"
        second = self._run_child(table, 5, killed=True, ts=10)
        assert [e["name"] for e in second["events"]] == []
        assert "status" not in second
        rows = [(r["pid"], r["exit"]) for r in table.summary()]
        assert rows == [(5, "1"), (5, "SIGKILL")]

    def test_memory_is_bounded_however_many_children(self):
        """Past ROWS_KEPT finished children the table only counts: no live rows
        are left, the summary ends with one row for the rest."""
        table = ProcessTable()
        for pid in range(3 * ROWS_KEPT):
            self._run_child(table, 1000 + pid, raised=pid % 3 == 0)
        assert table.rows == {}
        assert len(table.retired) == ROWS_KEPT
        rows = table.summary()
        assert len(rows) == ROWS_KEPT + 1
        rest = rows[-1]
        assert rest["name"] == f"{2 * ROWS_KEPT} more"
        assert rest["exit"] == f"0 ×{2 * ROWS_KEPT - 666}, 1 ×666"


def _peer(pid: int) -> _transport.Peer:
    peer = _transport.Peer(-1)
    peer.pid = pid
    return peer


def _frames(*events: dict[str, Any]) -> list[_transport.Frame]:
    out = []
    for e in events:
        body = _events.encode(e)[4:]
        kind, flags, _ = _events.PREFIX.unpack_from(body)
        out.append((kind, flags, memoryview(body)[_events.PREFIX.size :]))
    return out


@pytest.fixture
def router(tmp_path):
    """A real router over a real transport (unused socket), writing to memory."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cfg = ListenerConfig(
        "t", (SinkSpec("memory"),), (), os.getpid(), 5.0, str(tmp_path)
    )
    transport = _transport.Transport(lsock, b"k", os.getpid())
    r = _listener.Router(cfg, transport)
    transport.router = r
    yield r
    r.finish()
    lsock.close()


def _written(router) -> list[dict[str, Any]]:
    import json

    router.sinks[0].force_flush()
    with open(router.sinks[0].path) as f:
        return [json.loads(line) for line in f]


class TestRouter:
    def test_a_process_span_waits_for_the_childs_stream_and_keeps_the_order(
        self, router
    ):
        """The parent's span and what follows it wait until the child's stream ends."""
        parent, child = _peer(100), _peer(200)
        span = {
            "kind": "span",
            "name": "process c",
            "attributes": {"mptrace.span": "process", "process.pid": 200},
            "events": [],
            "seq": 1,
        }
        after = {"kind": "log", "level": "info", "event": "after", "pid": 100, "seq": 2}
        router.on_frames(parent, _frames(span, after))
        assert _written(router) == []
        finished = {
            "kind": "lifecycle",
            "transition": "finished",
            "target_pid": 200,
            "ts": 5,
            "outcome": "returned",
            "seq": 1,
        }
        router.on_frames(child, _frames(finished))
        router.on_end(child)
        names = [
            e.get("name") or e.get("event") or e["transition"] for e in _written(router)
        ]
        assert names == ["finished", "process c", "after"]
        assert [e["name"] for e in _written(router)[1]["events"]] == ["finished"]

    def test_a_span_whose_child_never_connected_goes_after_the_hold(
        self, router, monkeypatch
    ):
        """With no stream to wait for, the span leaves once HOLD_SPAN has passed."""
        monkeypatch.setattr(_listener, "HOLD_SPAN", 0.0)
        span = {
            "kind": "span",
            "name": "process gone",
            "attributes": {"mptrace.span": "process", "process.pid": 300},
            "seq": 1,
        }
        router.on_frames(_peer(100), _frames(span))
        router.on_tick()
        assert [e["name"] for e in _written(router)] == ["process gone"]


class TestErrorCount:
    @pytest.mark.parametrize("processors", [False, True])
    def test_errors_are_counted_by_level_not_by_bytes(self, tmp_path, processors):
        """A field holding {"level": "error"} is not an error; a processor changes nothing."""
        import sinks_for_tests

        from mptrace.sinks import sink

        out = tmp_path / "rows.jsonl"
        procs = [workers.passthrough_processor] if processors else None
        with mptrace.init(
            exporters=[sink(sinks_for_tests.RecordingSink, str(out))], processors=procs
        ):
            child = mptrace.get_context("fork").Process(
                target=workers.log_nested_level_field
            )
            child.start()
            child.join(60)
        import json

        rows = [json.loads(line) for line in out.read_text().splitlines()]
        [summary] = [r["summary"] for r in rows if "summary" in r]
        assert [(r["pid"], r["errors"]) for r in summary] == [(child.pid, 1)]


class TestStartTwice:
    def test_a_second_start_starts_nothing(self, tmp_path):
        """start() on a running session returns it; one listener, one stream."""
        import psutil

        session = mptrace.init(exporters=["memory"])
        pid = session.listener_pid
        assert session.start() is session
        assert session.listener_pid == pid
        listeners = [
            p
            for p in psutil.Process().children()
            if "mptrace._listener.main" in " ".join(p.cmdline())
        ]
        assert [p.pid for p in listeners] == [pid]
        logging.getLogger("app").warning("once")
        session.shutdown()
        assert len(logs_of(session.events(), event="once")) == 1
