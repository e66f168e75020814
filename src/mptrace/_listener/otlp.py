"""Sinks that hand events to OpenTelemetry SDK exporters: OTLP, and any user's.

:class:`SdkSink` takes events as plain dicts (docs/jsonl-schema.md) and queues
them in a ``batch.Batcher`` per signal, whose thread turns them back into
SDK objects (``_schema.otel.span_from_dict``, ``_schema.otel.LogBuilder``) and
sends them through a ``SpanExporter`` / ``LogExporter``. :class:`OtlpSink` is
one with the SDK's own OTLP exporters; :func:`sdk_sink_for` makes one around
an exporter a user named in ``exporters=``. Lifecycle events reach OTLP as
events of the process span, not on their own.

Configuration is the SDK's: with no endpoint in the exporter spec, the
``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, certificates,
compression, timeout) apply as they would to any OpenTelemetry program.
Unless ``OTEL_EXPORTER_OTLP_TIMEOUT`` (or its per-signal form) says
otherwise, one export gives up after 5 s, not the SDK's 10, so a receiver that
is down cannot hold the end of the program for long. At shutdown a signal
whose receiver is failing is not waited on.
``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER``, ``OTEL_LOGS_EXPORTER`` and
``OTEL_EXPORTER_OTLP_PROTOCOL`` mean what the specification says
(``otel_env``). A receiver that answers that it takes no logs (HTTP 404 or
405, gRPC UNIMPLEMENTED) is told so once and offered no more log records.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from mptrace._listener import otel_env as _otel_env
from mptrace._listener.batch import (  # noqa: F401 - tests read them here
    BATCH_SIZE,
    QUEUE_CAPACITY,
    Batcher,
    _quiet_sdk_exporters,
    _succeeded,
)
from mptrace._schema.events import Event
from mptrace._schema.otel import LogBuilder, _Resources, span_from_dict
from mptrace.sinks import SinkSpec

if TYPE_CHECKING:
    from mptrace._schema.config import ListenerConfig

#: One export's time limit (seconds) unless OTEL_EXPORTER_OTLP_TIMEOUT is set.
EXPORT_TIMEOUT = 5.0
#: The longest ``shutdown()`` spends sending what is queued (also bounded by
#: the session's shutdown_timeout).
FLUSH_LIMIT = 5.0
#: After the SDK exporter is shut down, how long a stuck send may take to end.
ABANDON_GRACE = 1.0

#: Said when log records cannot be sent: some receivers take spans only.
LOGS_HINT = "; OTEL_LOGS_EXPORTER=none sends none (Jaeger takes no logs)"

GRPC_DEFAULT = "http://localhost:4317"
HTTP_DEFAULT = "http://localhost:4318"


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _signal_url(base: str, signal: str) -> str:
    """An OTLP/HTTP URL for *signal*, from a base URL or another signal's URL."""
    base = base.rstrip("/")
    for known in ("/v1/traces", "/v1/logs"):
        base = base.removesuffix(known)
    return f"{base}/v1/{signal}"


class SdkSink:
    """A sink around SDK exporters: spans to *span_exporter*, logs to *log_exporter*.

    ``export`` queues, ``tick`` nudges a partial batch out, ``force_flush``
    waits for the queues to empty, ``shutdown`` sends what is queued within
    ``min(shutdown_timeout, FLUSH_LIMIT)`` seconds and counts the rest in
    ``dropped``. ``name`` says which sink and where, for messages.
    """

    def __init__(
        self,
        name: str,
        cfg: ListenerConfig,
        span_exporter: Any = None,
        log_exporter: Any = None,
    ) -> None:
        _quiet_sdk_exporters()
        if _otel_env.sdk_disabled():  # OTEL_SDK_DISABLED: nothing leaves through OTel
            span_exporter = log_exporter = None
        self.name = name
        self.flush_limit = min(cfg.shutdown_timeout, FLUSH_LIMIT)
        resources = _Resources({"service.name": cfg.service_name})
        self.sdk_exporters = [e for e in (span_exporter, log_exporter) if e is not None]
        self.spans: Batcher | None = None
        self.logs: Batcher | None = None
        if span_exporter is not None:
            convert = partial(span_from_dict, resources=resources)
            self.spans = Batcher(name, "spans", convert, span_exporter.export)
        if log_exporter is not None:
            self.logs = Batcher(
                name, "log records", LogBuilder(resources), log_exporter.export,
                LOGS_HINT, refusable=True,
            )  # fmt: skip

    @property
    def batchers(self) -> list[Batcher]:
        return [b for b in (self.spans, self.logs) if b is not None]

    def export(self, events: Sequence[Event]) -> None:
        spans, logs = self.spans, self.logs
        for event in events:
            kind = event.get("kind", "log")
            if kind == "span":
                if spans is not None:
                    spans.put(event)
            elif kind == "log" and logs is not None:
                logs.put(event)

    def tick(self) -> None:
        for batcher in self.batchers:
            batcher.poke()

    def force_flush(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        for batcher in self.batchers:
            batcher.poke(now=True)
        while any(b.busy() for b in self.batchers):
            if time.monotonic() >= deadline:
                return False
            self.batchers[0].wait(0.01)
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        batchers = self.batchers
        deadline = time.monotonic() + min(self.flush_limit, timeout)
        for batcher in batchers:
            batcher.close(deadline)
        _wait_for(batchers, deadline)
        grace = time.monotonic() + ABANDON_GRACE
        _stop_all(self.sdk_exporters, grace)
        for batcher in batchers:
            batcher.abandon(grace)

    @property
    def dropped(self) -> int:
        return sum(b.dropped for b in self.batchers)

    @property
    def dropped_what(self) -> str:
        counts = [(b.dropped, b.what) for b in self.batchers if b.dropped]
        if len(counts) == 1:
            return counts[0][1]
        if not counts:
            return self.batchers[0].what if self.batchers else "events"
        return "events (" + ", ".join(f"{n} {what}" for n, what in counts) + ")"


def sdk_sink_for(obj: Any, name: str, cfg: ListenerConfig) -> SdkSink | None:
    """An :class:`SdkSink` around *obj* if it is an SDK span or log exporter."""
    from opentelemetry.sdk.trace.export import SpanExporter

    if isinstance(obj, SpanExporter):
        return SdkSink(name, cfg, span_exporter=obj)
    try:
        from opentelemetry.sdk._logs.export import LogExporter
    except ImportError:  # pragma: no cover - an SDK without logs
        return None
    if isinstance(obj, LogExporter):
        return SdkSink(name, cfg, log_exporter=obj)
    return None


class OtlpSink(SdkSink):
    """The ``otlp`` / ``otlp+http`` / ``jaeger`` sink: OTLP over gRPC or HTTP.

    The protocol is the sink's name's (``otlp+grpc``, ``otlp+http``), else
    ``OTEL_EXPORTER_OTLP_PROTOCOL``'s; the signals sent follow
    ``OTEL_SDK_DISABLED`` and ``OTEL_TRACES_EXPORTER`` / ``OTEL_LOGS_EXPORTER``
    (``otel_env``).
    """

    def __init__(self, spec: SinkSpec, cfg: ListenerConfig) -> None:
        named = {"otlp+http": "http", "otlp+grpc": "grpc"}.get(spec.name)
        self.protocols = {
            signal: _otel_env.protocol(signal, named) for signal in ("traces", "logs")
        }
        self.protocol = self.protocols["traces"]
        self.target = spec.target
        self.endpoint = self._describe_endpoint()
        # spans=False: the program's own pipeline takes the spans (_otel_guest).
        traces = _otel_env.signal_enabled("traces") and spec.kwargs.get("spans", True)
        logs = spec.logs and _otel_env.signal_enabled("logs")
        super().__init__(
            f"{spec.name} ({self.endpoint})",
            cfg,
            span_exporter=self._sdk_exporter("traces") if traces else None,
            log_exporter=self._sdk_exporter("logs") if logs else None,
        )

    # -- setup --

    def _describe_endpoint(self) -> str:
        if self.protocol == "grpc":
            return (
                self.target
                or _env(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
                )
                or GRPC_DEFAULT
            )
        if self.target:
            return _signal_url(self.target, "traces")
        specific = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return specific or _signal_url(
            _env("OTEL_EXPORTER_OTLP_ENDPOINT") or HTTP_DEFAULT, "traces"
        )

    def _sdk_kwargs(self, signal: str) -> dict[str, Any]:
        """Only what the spec says, so the SDK reads the environment for the rest."""
        kwargs: dict[str, Any] = {}
        if self.target:
            if self.protocols[signal] == "http":
                kwargs["endpoint"] = _signal_url(self.target, signal)
            else:
                kwargs["endpoint"] = self.target
                if self.target.lower().startswith("http://"):
                    kwargs["insecure"] = True
        if not _env(
            "OTEL_EXPORTER_OTLP_TIMEOUT", f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
        ):
            kwargs["timeout"] = EXPORT_TIMEOUT
        return kwargs

    def _sdk_exporter(self, signal: str) -> Any:
        Exporter: Any
        if self.protocols[signal] == "grpc":
            if signal == "traces":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as Exporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                    OTLPLogExporter as Exporter,
                )
        elif signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as Exporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (
                OTLPLogExporter as Exporter,
            )
        return Exporter(**self._sdk_kwargs(signal))


def _wait_for(batchers: list[Batcher], deadline: float) -> None:
    """Wait until each batcher has sent all or is failing, or *deadline* passes.

    At shutdown a failing receiver gets no more patience: what it has not
    taken is counted dropped at once, not after the SDK's retries. Each
    signal is judged on its own: a receiver that takes no logs (Jaeger) must
    not cost the spans still queued.
    """
    while True:
        pending = [b for b in batchers if b.running and not b.struggling()]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return
        pending[0].wait(min(left, 0.05))


def _stop_all(sdk_exporters: list[Any], until: float) -> None:
    """Shut the SDK exporters down together, waiting for them until *until*.

    Shutting one down ends a send of it that is still retrying. Some SDK
    versions first wait for the export in progress: such a one is left to
    finish in its own daemon thread.
    """
    threads = [
        threading.Thread(
            target=_stop, args=(sdk,), name="mptrace-otlp-stop", daemon=True
        )
        for sdk in sdk_exporters
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))


def _stop(sdk: Any) -> None:
    try:
        sdk.shutdown()
    except Exception:  # its connection is going away with the process anyway
        pass
