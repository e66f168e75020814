"""The test OTLP receiver, checked against the real OpenTelemetry SDK exporters.

Every provider here is local (no global tracer or logger provider is set), and
every exporter is shut down by its provider, so no channel or session outlives
its test.
"""

from __future__ import annotations

import gzip
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.timeout(30)

RESOURCE = Resource.create(
    {"service.name": "rx-test", "deployment.environment": "test"}
)
EXPORT_TIMEOUT = (
    0.5  # seconds: a refused export gives up at once (first backoff is ~1 s)
)


# --------------------------------------------------------------------------- helpers


def export_span_tree(exporter: Any) -> dict[str, str]:
    """Send parent > child > grandchild through a local provider; return ids (hex)."""
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("rx-test-scope", "1.0")
    try:
        with tracer.start_as_current_span(
            "parent",
            kind=SpanKind.SERVER,
            attributes={"http.method": "GET", "retries": 2},
        ) as parent:
            parent.add_event("started", {"step": 1})
            with (
                tracer.start_as_current_span(
                    "child", attributes={"ratio": 0.5, "ok": True, "tags": ["a", "b"]}
                ) as child,
                tracer.start_as_current_span("grandchild") as grandchild,
            ):
                grandchild.set_status(Status(StatusCode.ERROR, "boom"))
    finally:
        provider.shutdown()  # also shuts the exporter down
    return {
        name: format(span.get_span_context().span_id, "016x")
        for name, span in (
            ("parent", parent),
            ("child", child),
            ("grandchild", grandchild),
        )
    } | {"trace_id": format(parent.get_span_context().trace_id, "032x")}


def emit_logs(exporter: Any) -> tuple[str, str]:
    """Send two log records, the first in a span; return its (trace_id, span_id)."""
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("rx-log-scope")
    tracer = TracerProvider(resource=RESOURCE).get_tracer("rx-test-scope")
    try:
        with tracer.start_as_current_span("with-log") as span:
            logger.emit(
                body="hello receiver",
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                attributes={"worker": 3, "phase": "load"},
                context=trace.set_span_in_context(span),
            )
        logger.emit(
            body="outside", severity_number=SeverityNumber.INFO, severity_text="INFO"
        )
    finally:
        provider.shutdown()
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def one_finished_span() -> ReadableSpan:
    """A finished SDK span that went to no exporter, to hand to exporter.export()."""
    tracer = TracerProvider(resource=RESOURCE).get_tracer("rx-test-scope")
    span = tracer.start_span("lonely")
    span.end()
    assert isinstance(span, ReadableSpan)
    return span


def export_one_log(exporter: Any) -> list[Any]:
    """Capture one SDK log record (via a local provider) for exporter.export()."""
    captured: list[Any] = []

    class _Keep:
        def on_emit(self, record: Any) -> None:
            captured.append(record)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(_Keep())  # type: ignore[arg-type]
    provider.get_logger("rx-log-scope").emit(
        body="refused?", severity_number=SeverityNumber.ERROR
    )
    provider.shutdown()
    assert len(captured) == 1
    return captured


def check_span_tree(spans: list[dict[str, Any]], ids: dict[str, str]) -> None:
    """The three spans of export_span_tree(), with their relations and attributes."""
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"parent", "child", "grandchild"}
    parent, child, grandchild = (
        by_name["parent"],
        by_name["child"],
        by_name["grandchild"],
    )
    assert {s["trace_id"] for s in spans} == {ids["trace_id"]}
    assert parent["span_id"] == ids["parent"] and parent["parent_span_id"] is None
    assert child["span_id"] == ids["child"] and child["parent_span_id"] == ids["parent"]
    assert (
        grandchild["span_id"] == ids["grandchild"]
        and grandchild["parent_span_id"] == ids["child"]
    )
    assert parent["attributes"] == {"http.method": "GET", "retries": 2}
    assert child["attributes"] == {"ratio": 0.5, "ok": True, "tags": ["a", "b"]}
    assert parent["kind_name"] == "SERVER" and child["kind_name"] == "INTERNAL"
    assert parent["events"][0]["name"] == "started"
    assert parent["events"][0]["attributes"] == {"step": 1}
    assert grandchild["status_code"] == 2 and grandchild["status_message"] == "boom"
    for span in spans:
        assert 0 < span["start_ns"] <= span["end_ns"]
        assert span["scope"] == "rx-test-scope"
        assert span["resource"]["service.name"] == "rx-test"
        assert span["resource"]["deployment.environment"] == "test"


def check_logs(logs: list[dict[str, Any]], trace_id: str, span_id: str) -> None:
    """The two records of emit_logs()."""
    first, second = logs
    assert first["body"] == "hello receiver"
    assert (
        first["severity_text"] == "WARN"
        and first["severity_number"] == SeverityNumber.WARN.value
    )
    assert first["attributes"] == {"worker": 3, "phase": "load"}
    assert (first["trace_id"], first["span_id"]) == (trace_id, span_id)
    assert (
        first["scope"] == "rx-log-scope"
        and first["resource"]["service.name"] == "rx-test"
    )
    assert (
        second["body"] == "outside"
        and second["trace_id"] is None
        and second["span_id"] is None
    )


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST raw bytes; the HTTP status code."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def rx() -> Iterator[OtlpReceiver]:
    """A running receiver, stopped after the test (a fixture local to this module)."""
    with OtlpReceiver() as receiver:
        yield receiver


# --------------------------------------------------------------------------- gRPC


class TestGrpc:
    def test_spans_arrive_with_parents_and_attributes(self, rx: OtlpReceiver) -> None:
        """Spans from OTLPSpanExporter (gRPC) keep parents and attributes."""
        ids = export_span_tree(
            GrpcSpanExporter(endpoint=rx.grpc_endpoint, insecure=True)
        )
        spans = rx.wait_for_spans(3, timeout=5)
        check_span_tree(spans, ids)
        assert len(rx.trace_requests) == 3  # SimpleSpanProcessor: one request per span
        assert rx.logs() == []

    def test_logs_arrive_with_trace_context(self, rx: OtlpReceiver) -> None:
        """Logs from OTLPLogExporter (gRPC) arrive with body, severity and span ids."""
        trace_id, span_id = emit_logs(
            GrpcLogExporter(endpoint=rx.grpc_endpoint, insecure=True)
        )
        check_logs(rx.wait_for_logs(2, timeout=5), trace_id, span_id)
        assert rx.spans() == []

    def test_refused_span_export_fails(self) -> None:
        """refuse=True: a span export: UNAVAILABLE, FAILURE, nothing stored."""
        with OtlpReceiver(refuse=True, http=False) as rx:
            exporter = GrpcSpanExporter(
                endpoint=rx.grpc_endpoint, insecure=True, timeout=EXPORT_TIMEOUT
            )
            try:
                assert (
                    exporter.export([one_finished_span()]) is SpanExportResult.FAILURE
                )
            finally:
                exporter.shutdown()
            assert rx.refused_count >= 1
            assert rx.spans() == [] and rx.trace_requests == []

    def test_refused_log_export_fails(self) -> None:
        """refuse=True: a log export: UNAVAILABLE, FAILURE, nothing stored."""
        with OtlpReceiver(refuse=True, http=False) as rx:
            exporter = GrpcLogExporter(
                endpoint=rx.grpc_endpoint, insecure=True, timeout=EXPORT_TIMEOUT
            )
            try:
                assert (
                    exporter.export(export_one_log(exporter))
                    is LogRecordExportResult.FAILURE
                )
            finally:
                exporter.shutdown()
            assert rx.refused_count >= 1 and rx.logs() == []


# --------------------------------------------------------------------------- HTTP


class TestHttp:
    def test_spans_arrive_with_parents_and_attributes(self, rx: OtlpReceiver) -> None:
        """Spans from OTLPSpanExporter (HTTP) keep parents and attributes."""
        ids = export_span_tree(HttpSpanExporter(endpoint=rx.http_traces_url))
        check_span_tree(rx.wait_for_spans(3, timeout=5), ids)

    @pytest.mark.parametrize(
        "compression", [HttpCompression.Gzip, HttpCompression.Deflate]
    )
    def test_compressed_spans_arrive(
        self, rx: OtlpReceiver, compression: HttpCompression
    ) -> None:
        """A compressing HTTP exporter (gzip, deflate) is decoded the same way."""
        ids = export_span_tree(
            HttpSpanExporter(endpoint=rx.http_traces_url, compression=compression)
        )
        check_span_tree(rx.wait_for_spans(3, timeout=5), ids)

    def test_logs_arrive_with_trace_context(self, rx: OtlpReceiver) -> None:
        """Logs from OTLPLogExporter (HTTP) arrive with body, severity and span ids."""
        trace_id, span_id = emit_logs(HttpLogExporter(endpoint=rx.http_logs_url))
        check_logs(rx.wait_for_logs(2, timeout=5), trace_id, span_id)

    def test_refused_span_export_fails(self) -> None:
        """refuse=True: HTTP answers 503, the export FAILURE, and nothing is stored."""
        with OtlpReceiver(refuse=True, grpc=False) as rx:
            exporter = HttpSpanExporter(
                endpoint=rx.http_traces_url, timeout=EXPORT_TIMEOUT
            )
            try:
                assert (
                    exporter.export([one_finished_span()]) is SpanExportResult.FAILURE
                )
            finally:
                exporter.shutdown()
            assert rx.refused_count >= 1 and rx.spans() == []

    def test_refused_log_export_fails(self) -> None:
        """With refuse=True a log export over HTTP fails, and nothing is stored."""
        with OtlpReceiver(refuse=True, grpc=False) as rx:
            exporter = HttpLogExporter(
                endpoint=rx.http_logs_url, timeout=EXPORT_TIMEOUT
            )
            try:
                assert (
                    exporter.export(export_one_log(exporter))
                    is LogRecordExportResult.FAILURE
                )
            finally:
                exporter.shutdown()
            assert rx.refused_count >= 1 and rx.logs() == []

    def test_raw_protocol_errors(self, rx: OtlpReceiver) -> None:
        """Unknown path 404, non-protobuf 415, undecodable 400; none is stored."""
        empty = trace_service_pb2.ExportTraceServiceRequest().SerializeToString()
        protobuf = {"Content-Type": "application/x-protobuf"}
        assert post(rx.http_endpoint + "/v1/metrics", empty, protobuf) == 404
        assert (
            post(rx.http_traces_url, b"{}", {"Content-Type": "application/json"}) == 415
        )
        assert post(rx.http_traces_url, b"\xff\xff\xff", protobuf) == 400
        assert (
            post(
                rx.http_traces_url, b"not gzip", protobuf | {"Content-Encoding": "gzip"}
            )
            == 400
        )
        assert rx.trace_requests == []
        assert (
            post(
                rx.http_traces_url,
                gzip.compress(empty),
                protobuf | {"Content-Encoding": "gzip"},
            )
            == 200
        )
        assert len(rx.trace_requests) == 1 and rx.spans() == []


# ---------------------------------------------------------- the receiver itself


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def _refuses_connections(endpoint: str) -> bool:
    port = int(endpoint.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


class TestReceiver:
    def test_wait_times_out_naming_what_arrived(self, rx: OtlpReceiver) -> None:
        """wait_for_spans raises AssertionError that lists the spans that did arrive."""
        export_span_tree(HttpSpanExporter(endpoint=rx.http_traces_url))
        with pytest.raises(
            AssertionError, match=r"at least 4 spans; 3 arrived: .*'grandchild'"
        ):
            rx.wait_for_spans(4, timeout=0.1)
        with pytest.raises(AssertionError, match=r"0 arrived"):
            rx.wait_for_logs(1, timeout=0.05)

    def test_wait_wakes_on_arrival(self, rx: OtlpReceiver) -> None:
        """A waiter blocked on a predicate is woken by the export that satisfies it."""
        done = threading.Event()
        sender = threading.Thread(
            target=lambda: (
                done.wait(5),
                export_span_tree(
                    GrpcSpanExporter(endpoint=rx.grpc_endpoint, insecure=True)
                ),
            )
        )
        sender.start()
        try:
            done.set()
            has_grandchild: Callable[[list[dict[str, Any]]], bool] = lambda spans: any(
                s["name"] == "grandchild" for s in spans
            )
            spans = rx.wait_for_spans(has_grandchild, timeout=5)
            assert any(s["name"] == "grandchild" for s in spans)
        finally:
            sender.join()

    def test_refuse_can_be_lifted_while_running(self, rx: OtlpReceiver) -> None:
        """Setting rx.refuse at run time switches between refusing and accepting."""
        rx.refuse = True
        exporter = HttpSpanExporter(endpoint=rx.http_traces_url, timeout=EXPORT_TIMEOUT)
        try:
            assert exporter.export([one_finished_span()]) is SpanExportResult.FAILURE
            rx.refuse = False
            assert exporter.export([one_finished_span()]) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert [s["name"] for s in rx.spans()] == ["lonely"]
        rx.clear()
        assert rx.spans() == [] and rx.refused_count == 0

    def test_start_stop_idempotent_and_leak_free(self) -> None:
        """start()/stop() are idempotent; then no receiver thread or port is left."""
        before = _threads()
        rx = OtlpReceiver()
        with pytest.raises(RuntimeError, match="not running"):
            _ = rx.grpc_endpoint
        rx.start()
        grpc_endpoint, http_endpoint = rx.grpc_endpoint, rx.http_endpoint
        assert (
            rx.start() is rx and rx.grpc_endpoint == grpc_endpoint
        )  # no second server
        assert grpc_endpoint.startswith(
            "http://127.0.0.1:"
        ) and http_endpoint.startswith("http://127.0.0.1:")
        export_span_tree(GrpcSpanExporter(endpoint=grpc_endpoint, insecure=True))
        export_span_tree(HttpSpanExporter(endpoint=rx.http_traces_url))
        rx.stop()
        rx.stop()
        assert not rx.running
        assert len(rx.spans()) == 6  # what was received outlives stop()
        assert _threads() - before == set()
        assert _refuses_connections(grpc_endpoint) and _refuses_connections(
            http_endpoint
        )

    def test_grpc_or_http_alone(self) -> None:
        """grpc=False / http=False run only the other server."""
        with OtlpReceiver(grpc=False) as rx:
            assert rx.http_endpoint
            with pytest.raises(RuntimeError, match="gRPC server is not running"):
                _ = rx.grpc_endpoint
        with OtlpReceiver(http=False) as rx:
            assert rx.grpc_endpoint
            with pytest.raises(RuntimeError, match="HTTP server is not running"):
                _ = rx.http_endpoint
        with pytest.raises(ValueError):
            OtlpReceiver(grpc=False, http=False)
