"""In the listener: the program's own OTLP span exporter, for its children's spans.

``_participant.otel_guest.with_program_pipeline`` describes each OTLP span exporter of
the program's provider (endpoint, headers, timeout, compression) and names
this class in ``exporters=``; the listener builds it like any SDK exporter a
user names, behind the same batching (``otlp.SdkSink``). It sends every
span but those of the program's own process, which the program's own
processors export already: each span reaches the program's backend once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class ProgramSpanExporter(SpanExporter):
    """An OTLP span exporter like the program's, skipping the owner's spans."""

    def __init__(
        self,
        protocol: str,
        endpoint: str,
        headers: dict[str, str],
        timeout: float,
        compression: str | None,
        owner_pid: int,
        insecure: bool = False,
    ) -> None:
        self.owner_pid = owner_pid
        self.inner = _build(protocol, endpoint, headers, timeout, compression, insecure)

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        theirs = [s for s in spans if _pid(s) != self.owner_pid]
        if not theirs:
            return SpanExportResult.SUCCESS
        return self.inner.export(theirs)  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _pid(span: Any) -> Any:
    resource = getattr(span, "resource", None)
    return resource.attributes.get("process.pid") if resource is not None else None


def _build(
    protocol: str,
    endpoint: str,
    headers: dict[str, str],
    timeout: float,
    compression: str | None,
    insecure: bool,
) -> Any:
    if protocol == "grpc":
        import grpc  # type: ignore[import-untyped]
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        names = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}
        return GrpcExporter(
            endpoint=endpoint,
            insecure=insecure,
            headers=headers or None,
            timeout=timeout,
            compression=names.get(compression or ""),
        )
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(
        endpoint=endpoint,
        headers=headers or None,
        timeout=timeout,
        compression=HttpCompression(compression) if compression else None,
    )
