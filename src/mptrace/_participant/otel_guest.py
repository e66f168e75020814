"""Beside the program's own OpenTelemetry pipeline.

When the program has set an SDK ``TracerProvider`` of its own before
``init()``, mptrace adds its span processor to it and changes nothing else
in the program's process. The program's exporters see that process's spans
through their own processors, as before. A child's spans cannot get there the
same way (a forked child's batch thread dies with it, a spawned child has no
provider of the program's at all), so:

- in every child, the program's span processors are set aside and only
  mptrace's runs: the child's spans travel to the listener;
- for each OTLP span exporter of the program's (gRPC or HTTP, behind a
  ``BatchSpanProcessor`` or ``SimpleSpanProcessor``), the listener gets an
  exporter with the same endpoint, headers, timeout and compression
  (``_listener.relay.ProgramSpanExporter``), which sends the spans of every process
  but the program's own;
- mptrace's own ``otlp``/``jaeger`` sinks then send no spans, only log
  records, so that no span reaches a backend twice;
- the session's service name is the program's provider's.

A program's exporter that is not OTLP cannot be rebuilt in the listener:
mptrace says so once, and that exporter gets the spans of the program's own
process only.

A provider set after ``init()`` is ignored by OpenTelemetry (the first one
set stays); mptrace says so on stderr instead of letting it pass in silence.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from mptrace.sinks import SinkSpec

RELAY = "mptrace._listener.relay:ProgramSpanExporter"


def program_provider() -> Any:
    """The program's own SDK provider, if it set one (not mptrace's)."""
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    if sdk is None:  # a program that never imported the SDK set no provider of it
        return None
    TracerProvider = sdk.TracerProvider
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None
    if getattr(provider, "_mptrace_own", False):
        return None
    return provider


def program_service_name() -> str | None:
    """The service name of the program's provider, unless it is the SDK's default."""
    provider = program_provider()
    if provider is None:
        return None
    name = provider.resource.attributes.get("service.name")
    if not isinstance(name, str) or name.startswith("unknown_service"):
        return None
    return name


def service_name(default: Callable[[], str]) -> str:
    """The program's provider's service name, else *default()*."""
    return program_service_name() or default()


def _processors(provider: Any) -> tuple[Any, ...]:
    multi = getattr(provider, "_active_span_processor", None)
    return tuple(getattr(multi, "_span_processors", ()))


def _exporter_of(processor: Any) -> Any:
    exporter = getattr(processor, "span_exporter", None)
    if exporter is None:  # SDK >= 1.34 keeps it in its batch processor
        inner = getattr(processor, "_batch_processor", None)
        exporter = getattr(inner, "_exporter", None)
    return exporter


def describe(exporter: Any) -> dict[str, Any] | None:
    """What rebuilds *exporter* in the listener, if it is an SDK OTLP span exporter."""
    module = type(exporter).__module__
    if type(exporter).__name__ != "OTLPSpanExporter":
        return None
    client = getattr(exporter, "_client", None)
    compression = getattr(exporter, "_compression", None)
    compression = getattr(compression, "value", compression)
    if module.startswith("opentelemetry.exporter.otlp.proto.grpc"):
        insecure = bool(getattr(exporter, "_insecure", False))
        endpoint = str(exporter._endpoint)
        scheme = "http://" if insecure else "https://"
        return {
            "protocol": "grpc",
            "endpoint": endpoint if "://" in endpoint else scheme + endpoint,
            "insecure": insecure,
            "headers": dict(getattr(exporter, "_headers", None) or ()),
            "timeout": float(getattr(exporter, "_timeout", 10.0)),
            "compression": {1: "deflate", 2: "gzip"}.get(int(compression or 0)),
        }
    if module.startswith("opentelemetry.exporter.otlp.proto.http"):
        headers = dict(getattr(client, "_headers", None) or {})
        for key in ("content-type", "user-agent", "Content-Type", "User-Agent"):
            headers.pop(key, None)
        return {
            "protocol": "http",
            "endpoint": str(exporter._endpoint),
            "headers": headers,
            "timeout": float(getattr(client, "_timeout", 10.0)),
            "compression": compression if compression in ("gzip", "deflate") else None,
        }
    return None


def with_program_pipeline(
    exporters: tuple[SinkSpec, ...], owner_pid: int, tracing: bool = True
) -> tuple[SinkSpec, ...]:
    """*exporters*, plus a relay to each OTLP exporter of the program's provider.

    With a relay, mptrace's own OTLP sinks send log records only.
    """
    provider = program_provider() if tracing else None
    if provider is None:
        return exporters
    relays = []
    for processor in _processors(provider):
        if getattr(processor, "_mptrace", False):
            continue
        exporter = _exporter_of(processor)
        if exporter is None:
            continue
        try:
            settings = describe(exporter)
        except Exception:
            settings = None
        if settings is None:
            sys.stderr.write(
                f"mptrace: note: the program's span exporter {type(exporter).__name__} "
                "is not OTLP; it gets the spans of this process only, and mptrace's "
                "exporters get every process's.\n"
            )
            continue
        relays.append(SinkSpec(RELAY, kwargs={**settings, "owner_pid": owner_pid}))
    if not relays:
        return exporters
    own = tuple(
        dataclasses.replace(s, kwargs={**s.kwargs, "spans": False})
        if s.name in ("otlp", "otlp+grpc", "otlp+http", "jaeger", "jaeger+http")
        else s
        for s in exporters
    )
    return own + tuple(relays)


def set_aside_program_processors(provider: Any, keep: Any) -> None:
    """In a child: only mptrace's processor runs; the listener relays the rest."""
    multi = getattr(provider, "_active_span_processor", None)
    if multi is None or not hasattr(multi, "_span_processors"):
        return
    lock = getattr(multi, "_lock", None)
    if lock is not None:
        with lock:
            multi._span_processors = (keep,)
    else:
        multi._span_processors = (keep,)


# -- a provider set after init() --------------------------------------------------


class LateProviderWarning(logging.Handler):
    """Turns OpenTelemetry's quiet "Overriding ... not allowed" into a clear line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.said or "TracerProvider" not in record.getMessage():
                return
            self.said = True
            sys.stderr.write(
                "mptrace: warning: a TracerProvider was set after mptrace.init(); "
                "OpenTelemetry keeps the one set first, so the new one is not used. "
                "Set your provider before init(): mptrace adds its processor to it.\n"
            )
        except Exception:  # a warning about a warning is not worth a crash
            pass


_late = LateProviderWarning()


def watch_late_provider() -> None:
    logger = logging.getLogger("opentelemetry.trace")
    if _late not in logger.handlers:
        logger.addHandler(_late)


def unwatch_late_provider() -> None:
    logging.getLogger("opentelemetry.trace").removeHandler(_late)
