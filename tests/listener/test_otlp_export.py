"""The listener's OTLP exporter, driven directly, against a real OTLP receiver.

The exporter object is what the listener builds for ``otlp`` and
``otlp+http``: span and log event dicts go in through ``export()``, as the
listener would pass them, and what arrives at ``OtlpReceiver`` over gRPC or
HTTP/protobuf is checked field by field. Receivers that refuse or are not
there at all must not hold ``shutdown()`` for more than a few seconds, and
whatever they did not take is counted in ``dropped``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from otlp_receiver import OtlpReceiver, _TraceServicer

from mptrace._listener import otlp as _otlp
from mptrace._schema.config import ListenerConfig
from mptrace.sinks import SinkSpec

TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT = "00f067aa0ba902b7"
CHILD = "b7ad6b7169203331"
T0 = 1_700_000_000_000_000_000
KINDS = ["otlp", "otlp+http"]
#: How long a shutdown may take when the receiver is refusing or absent.
PROMPT = 4.0


def config(shutdown_timeout: float = 10.0) -> ListenerConfig:
    """A listener configuration as ``mptrace.init`` would make it."""
    return ListenerConfig(
        service_name="otlp-test",
        exporters=(),
        processors=(),
        owner_pid=1,
        shutdown_timeout=shutdown_timeout,
    )


def endpoint(rx: OtlpReceiver, kind: str) -> str:
    """The receiver's endpoint for *kind*: gRPC, or the HTTP base URL."""
    return rx.grpc_endpoint if kind == "otlp" else rx.http_endpoint


def closed_port_url() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def otlp_exporter(
    kind: str, target: str | None, cfg: ListenerConfig | None = None
) -> Iterator[_otlp.OtlpSink]:
    """An exporter for *kind* and *target*, shut down however the test ends."""
    exporter = _otlp.OtlpSink(SinkSpec(kind, target), cfg or config())
    try:
        yield exporter
    finally:
        exporter.shutdown()


def span_event(span_id: str = CHILD, **fields: Any) -> dict[str, Any]:
    """A ``span`` event as a participating process sends it."""
    event: dict[str, Any] = {
        "kind": "span",
        "name": "task mymod.work",
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_span_id": ROOT,
        "span_kind": "internal",
        "start_ns": T0,
        "end_ns": T0 + 12_300_000,
        "status": "unset",
        "status_message": None,
        "attributes": {"mptrace.span": "task", "process.pid": 123},
        "events": [],
        "links": [],
        "scope": {"name": "mptrace", "version": "0.1.0"},
        "resource": {"service.name": "otlp-test", "process.pid": 123},
        "process": "worker-1",
        "pid": 123,
        "ppid": 100,
        "seq": 7,
    }
    event.update(fields)
    return event


def log_event(**fields: Any) -> dict[str, Any]:
    """A ``log`` event as a participating process sends it."""
    event: dict[str, Any] = {
        "kind": "log",
        "ts": T0,
        "level": "warning",
        "logger": "pipeline",
        "event": "fetched batch 1",
        "process": "fetch-1",
        "items": [19, 75, 19],
        "pid": 2602,
        "ppid": 2598,
        "seq": 2,
    }
    event.update(fields)
    return event


def many_spans(count: int) -> list[dict[str, Any]]:
    """*count* distinct root spans of one trace."""
    return [
        span_event(format(i + 1, "016x"), parent_span_id=None, name=f"span {i}")
        for i in range(count)
    ]


def export_all(exporter: _otlp.OtlpSink, events: list[dict[str, Any]]) -> None:
    for event in events:
        exporter.export([event])


@pytest.fixture
def rx() -> Iterator[OtlpReceiver]:
    """A running receiver that takes everything."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.mark.parametrize("kind", KINDS)
class TestSpansArrive:
    """Span dicts in, OTLP spans out: every field survives the trip."""

    def test_a_span_arrives_with_every_field(self, rx: OtlpReceiver, kind: str) -> None:
        """Ids, parent, kind, times, attributes, events, links, status, scope and resource."""
        event = span_event(
            span_kind="server",
            status="error",
            status_message="ValueError: boom",
            attributes={"count": 3, "ratio": 0.5, "ok": True, "tags": ["a", "b"]},
            events=[
                {
                    "name": "exception",
                    "ts": T0 + 10_000_000,
                    "attributes": {
                        "exception.type": "ValueError",
                        "exception.message": "boom",
                    },
                }
            ],
            links=[
                {
                    "trace_id": OTHER_TRACE,
                    "span_id": ROOT,
                    "attributes": {"mptrace.link": "worker process"},
                }
            ],
        )
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([event])
        [span] = rx.wait_for_spans(1)
        assert exporter.dropped == 0
        assert (span["trace_id"], span["span_id"], span["parent_span_id"]) == (
            TRACE,
            CHILD,
            ROOT,
        )
        assert span["name"] == "task mymod.work"
        assert span["kind_name"] == "SERVER"
        assert (span["start_ns"], span["end_ns"]) == (T0, T0 + 12_300_000)
        assert span["attributes"] == {
            "count": 3,
            "ratio": 0.5,
            "ok": True,
            "tags": ["a", "b"],
        }
        assert span["events"] == [
            {
                "name": "exception",
                "time_ns": T0 + 10_000_000,
                "attributes": {
                    "exception.type": "ValueError",
                    "exception.message": "boom",
                },
            }
        ]
        assert span["links"] == [
            {
                "trace_id": OTHER_TRACE,
                "span_id": ROOT,
                "attributes": {"mptrace.link": "worker process"},
            }
        ]
        assert (span["status_code"], span["status_message"]) == (2, "ValueError: boom")
        assert span["scope"] == "mptrace"
        assert span["resource"]["service.name"] == "otlp-test"
        assert span["resource"]["process.pid"] == 123

    def test_a_root_span_has_no_parent_and_an_ok_status(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """A null parent_span_id makes a root span; status "ok" arrives as OK, no message."""
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export(
                [
                    span_event(
                        ROOT, parent_span_id=None, status="ok", status_message="ignored"
                    )
                ]
            )
        [span] = rx.wait_for_spans(1)
        assert span["parent_span_id"] is None
        assert (span["status_code"], span["status_message"]) == (1, "")

    def test_values_otlp_cannot_hold_are_made_into_text(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """Dicts and mixed lists become JSON text, lone surrogates escapes, None is left out."""
        event = span_event(
            name="read \udcff.txt",
            attributes={
                "nested": {"a": [1, 2]},
                "mixed": [1, "x"],
                "none": None,
                "huge": 2**70,
                "path": "bad\udcfe",
            },
        )
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([event])
        [span] = rx.wait_for_spans(1)
        assert exporter.dropped == 0
        assert span["name"] == "read \\udcff.txt"
        assert span["attributes"] == {
            "nested": '{"a":[1,2]}',
            "mixed": '[1,"x"]',
            "huge": str(2**70),
            "path": "bad\\udcfe",
        }

    def test_each_process_keeps_its_own_resource(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """Spans of two processes arrive under two resources, each with its pid."""
        spans = [
            span_event(
                format(pid, "016x"),
                resource={"service.name": "otlp-test", "process.pid": pid},
            )
            for pid in (11, 22, 11)
        ]
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            export_all(exporter, spans)
        arrived = rx.wait_for_spans(3)
        assert {
            int(s["span_id"], 16): s["resource"]["process.pid"] for s in arrived
        } == {11: 11, 22: 22}
        assert sum(len(r.resource_spans) for r in rx.trace_requests) == 2

    def test_many_spans_go_in_batches_of_at_most_512(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """1,500 spans all arrive, in requests of at most 512 spans."""
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            export_all(exporter, many_spans(1500))
        arrived = rx.wait_for_spans(1500)
        assert exporter.dropped == 0
        assert len({s["span_id"] for s in arrived}) == 1500
        sizes = [
            sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans)
            for r in rx.trace_requests
        ]
        assert max(sizes) <= 512 and len(sizes) >= 3

    def test_a_partial_batch_leaves_within_about_a_second(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """Three spans arrive before shutdown, while the listener calls flush() when idle."""
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            export_all(exporter, many_spans(3))
            deadline = time.monotonic() + 5
            while len(rx.spans()) < 3 and time.monotonic() < deadline:
                exporter.tick()
                time.sleep(0.05)
            assert len(rx.spans()) == 3

    def test_malformed_spans_are_counted_not_raised(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """A span dict that cannot be a span is dropped and counted; the good ones still go."""
        bad = [
            {"kind": "span"},
            {
                "kind": "span",
                "name": "x",
                "mptrace_error": "span could not be converted",
            },
            span_event(trace_id="not hex"),
            span_event(span_id="0" * 16),
            span_event(start_ns="yesterday"),
            span_event(events=[{"name": "no time"}]),
            span_event(links="not a list of links"),
        ]
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            export_all(exporter, bad)
            exporter.export([span_event()])
        assert [s["span_id"] for s in rx.wait_for_spans(1)] == [CHILD]
        assert exporter.dropped == len(bad)
        assert exporter.dropped_what == "spans"

    def test_lifecycle_events_are_not_sent(self, rx: OtlpReceiver, kind: str) -> None:
        """Lifecycle events reach OTLP only as events of process spans: nothing is sent for them."""
        lifecycle = {
            "kind": "lifecycle",
            "ts": T0,
            "transition": "exited",
            "target_pid": 5,
            "exitcode": 0,
        }
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([lifecycle])
            exporter.export([span_event()])
        rx.wait_for_spans(1)
        assert len(rx.spans()) == 1 and rx.logs() == []
        assert exporter.dropped == 0


@pytest.mark.parametrize("kind", KINDS)
class TestLogsArrive:
    """Log events go out as OTLP log records next to the spans."""

    def test_a_log_record_arrives_with_its_fields(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """Body, severity, time, extra fields, process, logger as scope, resource."""
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([log_event()])
        [record] = rx.wait_for_logs(1)
        assert record["body"] == "fetched batch 1"
        assert (record["severity_text"], record["severity_number"]) == ("WARNING", 13)
        assert record["time_ns"] == T0
        assert record["attributes"] == {
            "items": [19, 75, 19],
            "mptrace.process.name": "fetch-1",
        }
        assert record["scope"] == "pipeline"
        assert record["resource"]["service.name"] == "otlp-test"
        assert record["resource"]["process.pid"] == 2602
        assert record["resource"]["process.parent_pid"] == 2598
        # No ids outside a span (SDKs before 1.39 send zeros, which mean the same).
        assert record["trace_id"] in (None, "0" * 32)
        assert record["span_id"] in (None, "0" * 16)

    def test_a_log_inside_a_span_carries_its_ids(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """trace_id and span_id of the log event tie the record to its span."""
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([log_event(trace_id=TRACE, span_id=CHILD)])
        [record] = rx.wait_for_logs(1)
        assert (record["trace_id"], record["span_id"]) == (TRACE, CHILD)

    def test_an_exception_becomes_exception_attributes(
        self, rx: OtlpReceiver, kind: str
    ) -> None:
        """exc becomes exception.type/.message/.stacktrace; levels map to severities."""
        exc = {
            "type": "ZeroDivisionError",
            "message": "division by zero",
            "traceback": "Traceback ...\n",
        }
        events = [
            log_event(level="error", event="failed", exc=exc),
            log_event(level="debug"),
            log_event(level="critical"),
            log_event(level="custom"),
        ]
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            export_all(exporter, events)
        records = rx.wait_for_logs(4)
        assert [r["severity_number"] for r in records] == [17, 5, 21, 0]
        assert {
            k: v
            for k, v in records[0]["attributes"].items()
            if k.startswith("exception.")
        } == {
            "exception.type": "ZeroDivisionError",
            "exception.message": "division by zero",
            "exception.stacktrace": "Traceback ...\n",
        }

    def test_otel_logs_exporter_none_sends_spans_only(
        self, rx: OtlpReceiver, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_LOGS_EXPORTER=none: log events are left out (a Jaeger takes no logs)."""
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([log_event()])
            exporter.export([span_event()])
        rx.wait_for_spans(1)
        assert rx.logs() == [] and exporter.logs is None
        assert exporter.dropped == 0


@pytest.mark.parametrize("kind", KINDS)
class TestReceiverDown:
    """A receiver that refuses or is not there: prompt shutdown, every span counted."""

    def test_a_refusing_receiver_drops_everything_and_says_so(self, kind: str) -> None:
        """Every span is counted dropped, and shutdown returns within seconds."""
        with OtlpReceiver(refuse=True) as rx:
            exporter = _otlp.OtlpSink(SinkSpec(kind, endpoint(rx, kind)), config())
            export_all(exporter, many_spans(700))
            started = time.monotonic()
            exporter.shutdown()
            took = time.monotonic() - started
            assert rx.refused_count >= 1
        assert took < PROMPT
        assert (exporter.dropped, exporter.dropped_what) == (700, "spans")
        assert rx.spans() == []

    def test_nothing_listening_drops_everything_promptly(self, kind: str) -> None:
        """A closed port: shutdown still returns within seconds, with every span counted."""
        exporter = _otlp.OtlpSink(SinkSpec(kind, closed_port_url()), config())
        export_all(exporter, many_spans(700))
        started = time.monotonic()
        exporter.shutdown()
        assert time.monotonic() - started < PROMPT
        assert (exporter.dropped, exporter.dropped_what) == (700, "spans")

    def test_a_receiver_that_went_down_earlier_is_not_waited_on(
        self, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a failed export, shutdown counts what is queued at once.

        OTEL_EXPORTER_OTLP_TIMEOUT (seconds) shortens each export, as it
        would for any OpenTelemetry exporter.
        """
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        exporter = _otlp.OtlpSink(SinkSpec(kind, closed_port_url()), config())
        exporter.export([span_event()])
        deadline = time.monotonic() + 10
        while exporter.dropped == 0 and time.monotonic() < deadline:
            exporter.tick()
            time.sleep(0.05)
        assert exporter.dropped == 1
        export_all(exporter, many_spans(10))
        started = time.monotonic()
        exporter.shutdown()
        assert time.monotonic() - started < 2.0
        assert exporter.dropped == 11

    def test_spans_and_logs_dropped_are_told_apart(self, kind: str) -> None:
        """With both signals dropped, dropped_what names both counts."""
        exporter = _otlp.OtlpSink(SinkSpec(kind, closed_port_url()), config())
        export_all(exporter, many_spans(3))
        export_all(exporter, [log_event()] * 2)
        exporter.shutdown()
        assert exporter.dropped == 5
        assert exporter.dropped_what == "events (3 spans, 2 log records)"

    def test_shutdown_timeout_bounds_a_receiver_that_never_answers(
        self, kind: str
    ) -> None:
        """A receiver that accepts connections but never replies holds shutdown no longer
        than the session's shutdown_timeout plus a moment."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(64)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            exporter = _otlp.OtlpSink(SinkSpec(kind, url), config(shutdown_timeout=1.0))
            export_all(exporter, many_spans(5))
            started = time.monotonic()
            exporter.shutdown()
            took = time.monotonic() - started
        assert took < 1.0 + _otlp.ABANDON_GRACE + 1.0
        assert exporter.dropped == 5


@contextmanager
def traces_only_grpc() -> Iterator[tuple[OtlpReceiver, str]]:
    """A gRPC receiver with the trace service only, as Jaeger is: logs are UNIMPLEMENTED.

    Yields the receiver that stores what arrives and the gRPC endpoint.
    """
    with OtlpReceiver(grpc=False) as rx, ThreadPoolExecutor(max_workers=2) as pool:
        server = grpc.server(pool)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceServicer(rx), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield rx, f"http://127.0.0.1:{port}"
        finally:
            server.stop(grace=1.0).wait()


class TestReceiverWithoutLogs:
    """A receiver that takes spans but no logs (Jaeger) is told once, then spared."""

    def test_spans_still_go_and_logs_stop_after_one_notice(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every span arrives; one line says logs stop; no drop count (gRPC, no service)."""
        with traces_only_grpc() as (rx, url):
            exporter = _otlp.OtlpSink(SinkSpec("otlp", url), config())
            export_all(exporter, [log_event()] * 2)
            assert exporter.logs is not None
            deadline = time.monotonic() + 5
            while not exporter.logs.refused and time.monotonic() < deadline:
                exporter.tick()
                time.sleep(0.05)
            export_all(exporter, [log_event()] * 3 + many_spans(600))
            exporter.shutdown()
            assert len(rx.wait_for_spans(600)) == 600
        assert exporter.dropped == 0
        err = capsys.readouterr().err
        assert err.count("does not take log records") == 1, err
        assert "dropped" not in err and "could not send" not in err

    @pytest.mark.parametrize("kind", KINDS)
    def test_a_receiver_answering_no_logs_gets_one_request(
        self, kind: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """HTTP 404 / gRPC UNIMPLEMENTED on logs: one request, one line, nothing after."""
        with OtlpReceiver(logs=False) as rx:
            exporter = _otlp.OtlpSink(SinkSpec(kind, endpoint(rx, kind)), config())
            for _ in range(3):
                export_all(exporter, [log_event(), span_event()])
                assert exporter.force_flush(5)
            exporter.shutdown()
            assert rx.log_attempts == 1
            assert len(rx.spans()) == 3
        assert exporter.dropped == 0
        assert capsys.readouterr().err.count("does not take log records") == 1


class TestOtelVariables:
    """The OTEL_* variables mean what the OpenTelemetry specification says."""

    def test_protocol_http_protobuf_makes_otlp_speak_http(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: 'otlp' reaches an HTTP-only receiver."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        with OtlpReceiver(grpc=False) as rx:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_endpoint)
            with otlp_exporter("otlp", None) as exporter:
                exporter.export([span_event(), log_event()])
            assert len(rx.wait_for_spans(1)) == 1
            assert len(rx.wait_for_logs(1)) == 1
        assert exporter.dropped == 0

    def test_http_json_fails_at_init(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A protocol the Python SDK cannot speak is refused at once, saying what is valid."""
        import mptrace

        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        with pytest.raises(mptrace.ConfigurationError, match="'http/protobuf'"):
            mptrace.init(exporters=["otlp"])

    def test_sdk_disabled_sends_nothing(
        self, rx: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_SDK_DISABLED=true: neither spans nor log records leave."""
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        with otlp_exporter("otlp", rx.grpc_endpoint) as exporter:
            exporter.export([span_event(), log_event()])
            assert exporter.force_flush(5)
        assert rx.spans() == [] and rx.logs() == [] and exporter.dropped == 0

    @pytest.mark.parametrize("value", ["none", "console"])
    def test_traces_exporter_without_otlp_sends_logs_only(
        self, rx: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        """OTEL_TRACES_EXPORTER without 'otlp' in it: no spans over OTLP, logs still."""
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
        with otlp_exporter("otlp", rx.grpc_endpoint) as exporter:
            exporter.export([span_event(), log_event()])
        assert len(rx.wait_for_logs(1)) == 1
        assert rx.spans() == [] and exporter.spans is None


class TestQueueOverflow:
    """The queue is bounded: beyond it, spans are counted dropped, never waited for."""

    def test_a_full_queue_counts_what_it_turns_away(self) -> None:
        """20,000 queued at most: the surplus is dropped at once and counted."""
        event = span_event()
        total = _otlp.QUEUE_CAPACITY + 2 * _otlp.BATCH_SIZE + 100
        with OtlpReceiver(refuse=True) as rx:
            exporter = _otlp.OtlpSink(SinkSpec("otlp", rx.grpc_endpoint), config())
            started = time.monotonic()
            for _ in range(total):
                exporter.export([event])
            assert time.monotonic() - started < 2.0  # export() never waits
            assert exporter.spans.overflowed >= 100
            exporter.shutdown()
        assert exporter.dropped == total


@pytest.mark.parametrize("kind", KINDS)
class TestEnvironment:
    """With no endpoint in the spec, the standard OTEL_EXPORTER_OTLP_* variables apply."""

    def test_otel_exporter_otlp_endpoint_is_honoured(
        self, rx: OtlpReceiver, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_EXPORTER_OTLP_ENDPOINT (a base URL for HTTP) is where spans and logs go."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint(rx, kind))
        with otlp_exporter(kind, None) as exporter:
            exporter.export([span_event()])
            exporter.export([log_event()])
        assert len(rx.wait_for_spans(1)) == 1
        assert len(rx.wait_for_logs(1)) == 1
        assert exporter.dropped == 0
        assert endpoint(rx, kind) in exporter.name

    def test_the_signal_specific_variable_wins(
        self, rx: OtlpReceiver, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT beats OTEL_EXPORTER_OTLP_ENDPOINT for spans."""
        traces = rx.grpc_endpoint if kind == "otlp" else rx.http_traces_url
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port_url())
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
        with otlp_exporter(kind, None) as exporter:
            exporter.export([span_event()])
        assert len(rx.wait_for_spans(1)) == 1
        assert exporter.name == f"{kind} ({traces})"

    def test_an_endpoint_in_the_spec_beats_the_environment(
        self, rx: OtlpReceiver, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """'otlp:URL' goes to URL whatever OTEL_EXPORTER_OTLP_ENDPOINT says."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port_url())
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", closed_port_url())
        with otlp_exporter(kind, endpoint(rx, kind)) as exporter:
            exporter.export([span_event()])
            exporter.export([log_event()])
        rx.wait_for_spans(1)
        rx.wait_for_logs(1)
        assert exporter.dropped == 0

    def test_without_any_endpoint_the_defaults_are_named(
        self, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No spec target and no variable: localhost:4317 (gRPC) or :4318/v1/traces."""
        for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ):
            monkeypatch.delenv(name, raising=False)
        with otlp_exporter(kind, None, config(shutdown_timeout=0.5)) as exporter:
            expected = (
                "http://localhost:4317"
                if kind == "otlp"
                else "http://localhost:4318/v1/traces"
            )
            assert exporter.name == f"{kind} ({expected})"


class TestHttpUrls:
    """otlp+http takes a base URL or the full traces URL."""

    def test_the_full_traces_url_works_too(self, rx: OtlpReceiver) -> None:
        """'otlp+http:http://host:4318/v1/traces' sends spans there and logs to /v1/logs."""
        with otlp_exporter("otlp+http", rx.http_traces_url) as exporter:
            exporter.export([span_event()])
            exporter.export([log_event()])
        rx.wait_for_spans(1)
        rx.wait_for_logs(1)
        assert exporter.name == f"otlp+http ({rx.http_traces_url})"

    def test_a_base_url_with_a_path_gets_the_signal_path_appended(self) -> None:
        """A collector behind a path prefix: /v1/traces and /v1/logs go under it."""
        assert (
            _otlp._signal_url("http://h:4318/otlp/", "traces")
            == "http://h:4318/otlp/v1/traces"
        )
        assert (
            _otlp._signal_url("http://h:4318/v1/traces", "logs")
            == "http://h:4318/v1/logs"
        )
