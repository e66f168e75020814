"""What the OpenTelemetry environment variables mean for mptrace's OTLP sinks.

As the OpenTelemetry specification has them:

``OTEL_SDK_DISABLED=true``
    No telemetry leaves through OpenTelemetry: the OTLP sinks and any SDK
    exporter named in ``exporters=`` send nothing (the JSON-lines file and
    the console are not OpenTelemetry and go on).
``OTEL_TRACES_EXPORTER`` / ``OTEL_LOGS_EXPORTER``
    Comma-separated exporter names, ``otlp`` by default: a signal goes to
    the OTLP sinks only while ``otlp`` is among them (``none`` sends none).
``OTEL_EXPORTER_OTLP_PROTOCOL`` (and ``..._TRACES_PROTOCOL``, ``..._LOGS_PROTOCOL``)
    ``grpc`` or ``http/protobuf`` for the ``otlp`` and ``jaeger`` sinks
    (``otlp+grpc`` and ``otlp+http`` say their protocol themselves);
    ``http/json``, which the Python SDK does not offer, is refused at
    ``init()``.
"""

from __future__ import annotations

import os

from mptrace.exceptions import ConfigurationError

PROTOCOLS = {"grpc": "grpc", "http/protobuf": "http"}


def _value(name: str) -> str:
    return os.environ.get(name, "").strip().lower()


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED`` is ``true`` (case-insensitive), as the spec says."""
    return _value("OTEL_SDK_DISABLED") == "true"


def signal_enabled(signal: str) -> bool:
    """Whether *signal* (``traces`` or ``logs``) goes to the OTLP sinks."""
    if sdk_disabled():
        return False
    value = _value(f"OTEL_{signal.upper()}_EXPORTER")
    if not value:
        return True
    return "otlp" in {part.strip() for part in value.split(",")}


def protocol(signal: str, named: str | None = None) -> str:
    """``grpc`` or ``http`` for *signal*: *named* if the sink says it, else the env.

    Raises ConfigurationError for a protocol the Python SDK cannot speak.
    """
    if named is not None:
        return named
    for var in (
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        value = _value(var)
        if value:
            if value not in PROTOCOLS:
                raise ConfigurationError(
                    f"{var}={value!r} is not a protocol mptrace can send: valid "
                    "values are 'grpc' and 'http/protobuf' (the Python SDK has "
                    "no 'http/json')."
                )
            return PROTOCOLS[value]
    return "grpc"


def check() -> None:
    """At ``init()``: fail at once on a protocol that cannot be used."""
    protocol("traces")
    protocol("logs")
