"""A real OTLP receiver for tests: gRPC and HTTP/protobuf on 127.0.0.1, free ports.

It is built on the generated services and messages of ``opentelemetry-proto``,
so whatever an OpenTelemetry exporter sends to it is decoded exactly as a
collector would decode it. Typical use::

    with OtlpReceiver() as rx:
        exporter = OTLPSpanExporter(endpoint=rx.grpc_endpoint, insecure=True)
        ...
        spans = rx.wait_for_spans(3, timeout=5)

``logs=False`` makes a traces-only receiver, as Jaeger is: the logs service
answers gRPC UNIMPLEMENTED and HTTP 404, and ``log_attempts`` counts the
requests turned away.

``refuse=True`` (also settable while running: ``rx.refuse = True``) makes the
gRPC services answer UNAVAILABLE and the HTTP endpoints 503, and stores
nothing; ``refused_count`` tells how many export requests were turned away.

Requests are stored as the raw ``ExportTraceServiceRequest`` /
``ExportLogsServiceRequest`` messages (``trace_requests`` / ``log_requests``)
and flattened on demand into plain dicts by ``spans()`` and ``logs()``.

A note for multi-process tests: a running gRPC server puts gRPC's threads into
this process, and forking such a process is something gRPC supports only
partly. Tests that fork children while the receiver runs can pass
``grpc=False`` and point the children at the HTTP endpoint.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import (
    logs_service_pb2,
    logs_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["OtlpReceiver"]

SpanDict = dict[str, Any]
LogDict = dict[str, Any]
SpanCondition = int | Callable[[list[SpanDict]], bool]
LogCondition = int | Callable[[list[LogDict]], bool]

_HOST = "127.0.0.1"
_PROTOBUF = "application/x-protobuf"
_REFUSED = "refused by the test OTLP receiver"


# --------------------------------------------------------------------------- decoding


def decode_any_value(value: common_pb2.AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (None when it holds nothing)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [decode_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, kind)  # string, bool, int, double or bytes


def decode_attributes(attributes: Any) -> dict[str, Any]:
    """A repeated ``KeyValue`` field as a dict."""
    return {kv.key: decode_any_value(kv.value) for kv in attributes}


def _hex_or_none(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def _kind_name(kind: int) -> str:
    name = trace_pb2.Span.SpanKind.Name(kind)  # e.g. SPAN_KIND_SERVER
    return name.removeprefix("SPAN_KIND_")


def _span_dict(span: trace_pb2.Span, resource: dict[str, Any], scope: str) -> SpanDict:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": _hex_or_none(span.parent_span_id),
        "name": span.name,
        # The proto's numbering: 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER
        # (one more than the SDK's SpanKind values); kind_name spells it out.
        "kind": int(span.kind),
        "kind_name": _kind_name(span.kind),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": decode_attributes(span.attributes),
        "events": [
            {
                "name": event.name,
                "time_ns": event.time_unix_nano,
                "attributes": decode_attributes(event.attributes),
            }
            for event in span.events
        ],
        "links": [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "attributes": decode_attributes(link.attributes),
            }
            for link in span.links
        ],
        # 0 UNSET, 1 OK, 2 ERROR
        "status_code": int(span.status.code),
        "status_message": span.status.message,
        "resource": resource,
        "scope": scope,
    }


def _log_dict(record: Any, resource: dict[str, Any], scope: str) -> LogDict:
    return {
        # A str for the usual string body; other bodies decoded like attributes.
        "body": decode_any_value(record.body),
        "severity_text": record.severity_text,
        "severity_number": int(record.severity_number),
        "attributes": decode_attributes(record.attributes),
        "trace_id": _hex_or_none(record.trace_id),
        "span_id": _hex_or_none(record.span_id),
        "time_ns": record.time_unix_nano,
        "observed_time_ns": record.observed_time_unix_nano,
        "resource": resource,
        "scope": scope,
    }


def _flatten_spans(
    requests: list[trace_service_pb2.ExportTraceServiceRequest],
) -> list[SpanDict]:
    out: list[SpanDict] = []
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = decode_attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope.name
                out.extend(_span_dict(s, resource, scope) for s in scope_spans.spans)
    return out


def _flatten_logs(
    requests: list[logs_service_pb2.ExportLogsServiceRequest],
) -> list[LogDict]:
    out: list[LogDict] = []
    for request in requests:
        for resource_logs in request.resource_logs:
            resource = decode_attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                scope = scope_logs.scope.name
                out.extend(
                    _log_dict(r, resource, scope) for r in scope_logs.log_records
                )
    return out


def _summary(items: list[dict[str, Any]], key: str) -> str:
    shown = [repr(item.get(key)) for item in items[:20]]
    more = f", ... {len(items) - 20} more" if len(items) > 20 else ""
    return f"{len(items)} arrived: [{', '.join(shown)}{more}]"


# --------------------------------------------------------------------------- gRPC


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if not self._receiver._accept("traces", request):
            context.abort(grpc.StatusCode.UNAVAILABLE, _REFUSED)
        return trace_service_pb2.ExportTraceServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self,
        request: logs_service_pb2.ExportLogsServiceRequest,
        context: grpc.ServicerContext,
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        if not self._receiver._take_logs():
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no logs service")
        if not self._receiver._accept("logs", request):
            context.abort(grpc.StatusCode.UNAVAILABLE, _REFUSED)
        return logs_service_pb2.ExportLogsServiceResponse()


# --------------------------------------------------------------------------- HTTP

_HTTP_ROUTES: dict[str, tuple[str, Any, Any]] = {
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/logs": (
        "logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}


class _HttpServer(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so none outlives stop().
    daemon_threads = False
    block_on_close = True
    receiver: OtlpReceiver


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no handler thread idles on a
    # kept-alive socket after stop(); the timeout bounds a client that stalls.
    protocol_version = "HTTP/1.0"
    timeout = 10
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _reply(
        self, status: HTTPStatus, body: bytes = b"", content_type: str = "text/plain"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        route = _HTTP_ROUTES.get(self.path.split("?", 1)[0])
        body = self._read_body()
        if route is None:
            self._reply(HTTPStatus.NOT_FOUND, b"unknown OTLP path")
            return
        signal, request_type, response_type = route
        if signal == "logs" and not self.server.receiver._take_logs():
            self._reply(HTTPStatus.NOT_FOUND, b"no logs here")
            return
        content_type = (
            self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        )
        if content_type != _PROTOBUF:
            self._reply(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                b"only application/x-protobuf is supported",
            )
            return
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                self._reply(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"unsupported Content-Encoding"
                )
                return
            request = request_type.FromString(body)
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            self._reply(
                HTTPStatus.BAD_REQUEST, f"cannot decode the request: {exc}".encode()
            )
            return
        if not self.server.receiver._accept(signal, request):
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, _REFUSED.encode())
            return
        self._reply(HTTPStatus.OK, response_type().SerializeToString(), _PROTOBUF)


# ---------------------------------------------------------------------- the receiver


class OtlpReceiver:
    """An OTLP/gRPC and OTLP/HTTP (protobuf) receiver on 127.0.0.1 keeping all it gets.

    ``grpc`` / ``http`` choose which servers run (both by default);
    ``refuse`` turns every export request away (UNAVAILABLE / 503).
    """

    def __init__(
        self,
        *,
        refuse: bool = False,
        grpc: bool = True,
        http: bool = True,
        logs: bool = True,
    ) -> None:
        if not (grpc or http):
            raise ValueError("enable at least one of grpc and http")
        self.refuse = refuse
        self.logs_service = logs
        self.log_attempts = 0
        self._want_grpc = grpc
        self._want_http = http
        self._cond = threading.Condition()
        self._trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._log_requests: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self._refused = 0
        self._lifecycle = threading.Lock()
        self._grpc_server: Any = None
        self._grpc_executor: ThreadPoolExecutor | None = None
        self._grpc_port: int | None = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._http_port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start the servers (a no-op when they already run); returns self."""
        with self._lifecycle:
            if self._grpc_server is not None or self._http_server is not None:
                return self
            try:
                if self._want_grpc:
                    self._start_grpc()
                if self._want_http:
                    self._start_http()
            except BaseException:
                self._stop_locked()
                raise
        return self

    def stop(self) -> None:
        """Stop the servers and join their threads (no-op when stopped); data stays."""
        with self._lifecycle:
            self._stop_locked()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._grpc_server is not None or self._http_server is not None

    def _start_grpc(self) -> None:
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-rx-grpc")
        server = grpc.server(executor)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceServicer(self), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            _LogsServicer(self), server
        )
        self._grpc_executor = executor
        self._grpc_server = server
        port = server.add_insecure_port(f"{_HOST}:0")
        if not port:
            raise OSError(f"gRPC server could not bind {_HOST}:0")
        server.start()
        self._grpc_port = port

    def _start_http(self) -> None:
        server = _HttpServer((_HOST, 0), _OtlpHttpHandler)
        server.receiver = self
        self._http_server = server
        self._http_port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"otlp-rx-http-{self._http_port}",
            daemon=True,
        )
        self._http_thread = thread
        thread.start()

    def _stop_locked(self) -> None:
        if self._grpc_server is not None:
            # Grace lets an in-flight Export finish; wait() until the server is down.
            self._grpc_server.stop(grace=1.0).wait()
            self._grpc_server = None
        if self._grpc_executor is not None:
            # grpc.server() does not own the executor: shut it down, join its workers.
            self._grpc_executor.shutdown(wait=True)
            self._grpc_executor = None
        if self._http_server is not None:
            if self._http_thread is not None and self._http_thread.is_alive():
                self._http_server.shutdown()  # ends serve_forever()
            self._http_server.server_close()  # closes the socket, joins handler threads
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
        self._grpc_port = None
        self._http_port = None

    # ---------------------------------------------------------------- endpoints

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the gRPC server (use insecure=True)."""
        if self._grpc_port is None:
            raise RuntimeError("the gRPC server is not running")
        return f"http://{_HOST}:{self._grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the HTTP server (base URL)."""
        if self._http_port is None:
            raise RuntimeError("the HTTP server is not running")
        return f"http://{_HOST}:{self._http_port}"

    @property
    def http_traces_url(self) -> str:
        """The full URL an HTTP span exporter takes as ``endpoint``."""
        return self.http_endpoint + "/v1/traces"

    @property
    def http_logs_url(self) -> str:
        """The full URL an HTTP log exporter takes as ``endpoint``."""
        return self.http_endpoint + "/v1/logs"

    # ---------------------------------------------------------------- storage

    def _take_logs(self) -> bool:
        """False (and counted) when this receiver has no logs service."""
        with self._cond:
            if not self.logs_service:
                self.log_attempts += 1
                self._cond.notify_all()
            return self.logs_service

    def _accept(self, signal: str, request: Any) -> bool:
        """Store *request* and wake waiters, or count it refused; False when refused."""
        with self._cond:
            if self.refuse:
                self._refused += 1
                self._cond.notify_all()
                return False
            if signal == "traces":
                self._trace_requests.append(request)
            else:
                self._log_requests.append(request)
            self._cond.notify_all()
            return True

    @property
    def trace_requests(self) -> list[trace_service_pb2.ExportTraceServiceRequest]:
        """The ExportTraceServiceRequest messages received, in order of arrival."""
        with self._cond:
            return list(self._trace_requests)

    @property
    def log_requests(self) -> list[logs_service_pb2.ExportLogsServiceRequest]:
        """The ExportLogsServiceRequest messages received, in order of arrival."""
        with self._cond:
            return list(self._log_requests)

    @property
    def refused_count(self) -> int:
        """How many export requests (either signal, either protocol) were refused."""
        with self._cond:
            return self._refused

    def clear(self) -> None:
        """Forget everything received and the refused count."""
        with self._cond:
            self._trace_requests.clear()
            self._log_requests.clear()
            self._refused = 0

    def spans(self) -> list[SpanDict]:
        """Every span received so far, flattened to plain dicts, in order of arrival."""
        with self._cond:
            return _flatten_spans(self._trace_requests)

    def logs(self) -> list[LogDict]:
        """Every log record received so far, as plain dicts, in order of arrival."""
        with self._cond:
            return _flatten_logs(self._log_requests)

    def wait_for_spans(
        self, predicate_or_count: SpanCondition, timeout: float = 5.0
    ) -> list[SpanDict]:
        """Wait until N spans arrived, or ``predicate(spans)`` holds; return the spans.

        Raises AssertionError naming what did arrive when *timeout* seconds pass first.
        """
        return self._wait(
            predicate_or_count, timeout, self._spans_view, "spans", "name"
        )

    def wait_for_logs(
        self, predicate_or_count: LogCondition, timeout: float = 5.0
    ) -> list[LogDict]:
        """Wait until N log records arrived, or ``predicate(logs)`` holds; return them.

        Raises AssertionError naming what did arrive when *timeout* seconds pass first.
        """
        return self._wait(
            predicate_or_count, timeout, self._logs_view, "log records", "body"
        )

    def _spans_view(self) -> list[SpanDict]:  # call with self._cond held
        return _flatten_spans(self._trace_requests)

    def _logs_view(self) -> list[LogDict]:  # call with self._cond held
        return _flatten_logs(self._log_requests)

    def _wait(
        self,
        predicate_or_count: Any,
        timeout: float,
        view: Callable[[], list[dict[str, Any]]],
        what: str,
        key: str,
    ) -> list[dict[str, Any]]:
        if isinstance(predicate_or_count, bool) or not (
            isinstance(predicate_or_count, int) or callable(predicate_or_count)
        ):
            raise TypeError(
                f"expected a count or a predicate, got {predicate_or_count!r}"
            )
        if isinstance(predicate_or_count, int):
            count = predicate_or_count
            wanted = f"at least {count} {what}"

            def predicate(items: list[dict[str, Any]]) -> bool:
                return len(items) >= count

        else:
            predicate = predicate_or_count
            wanted = (
                f"{what} satisfying {getattr(predicate, '__name__', repr(predicate))}"
            )
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                items = view()
                if predicate(items):
                    return items
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {wanted}; "
                        f"{_summary(items, key)}"
                        f" ({self._refused} export requests refused)"
                    )
                self._cond.wait(remaining)
