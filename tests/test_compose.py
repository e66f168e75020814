"""docker-compose.jaeger.yml: a pinned Jaeger v2 all-in-one publishing OTLP and the UI.

No Docker engine is needed: the file is only parsed and checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.jaeger.yml"
IMAGE = re.compile(
    r"^jaegertracing/jaeger:(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$"
)
PORTS = (16686, 4317, 4318)  # UI, OTLP gRPC, OTLP HTTP
HEALTH_PORT = 13133  # the healthcheckv2 extension of Jaeger v2


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "the compose file is not a mapping"
    return data


def _service() -> dict[str, Any]:
    services = _compose().get("services")
    assert isinstance(services, dict) and len(services) == 1, (
        f"expected one service, got {services!r}"
    )
    (service,) = services.values()
    assert isinstance(service, dict)
    return service


def _published(entry: Any) -> tuple[int, int, str]:
    """(host port, container port, protocol) of a `ports:` entry, short or long form."""
    if isinstance(entry, dict):
        return (
            int(entry["published"]),
            int(entry["target"]),
            str(entry.get("protocol", "tcp")),
        )
    spec, _, protocol = str(entry).partition("/")
    parts = spec.split(":")
    assert len(parts) in (2, 3), f"port {entry!r} is not published on a fixed host port"
    return int(parts[-2]), int(parts[-1]), protocol or "tcp"


class TestJaegerCompose:
    def test_one_service_with_pinned_v2_image(self) -> None:
        """One service, image jaegertracing/jaeger at a pinned 2.x.y tag."""
        image = _service().get("image")
        match = IMAGE.match(str(image))
        assert match, (
            f"image {image!r} is not jaegertracing/jaeger:<major>.<minor>.<patch>"
        )
        assert int(match["major"]) == 2, f"image {image!r} is not Jaeger v2"

    def test_ui_and_otlp_ports_published_on_same_host_ports(self) -> None:
        """16686 (UI), 4317 (OTLP gRPC), 4318 (OTLP HTTP) keep their port on the host."""
        published = [_published(entry) for entry in _service().get("ports", [])]
        for port in PORTS:
            assert (port, port, "tcp") in published, (
                f"{port} is not published as {port}:{port}: {published}"
            )

    def test_healthcheck_targets_health_extension(self) -> None:
        """The healthcheck, if any, probes the v2 health check extension on 13133."""
        healthcheck = _service().get("healthcheck")
        if healthcheck is None:
            pytest.skip("no healthcheck declared")
        test = healthcheck["test"]
        command = " ".join(test) if isinstance(test, list) else str(test)
        assert re.search(rf"(localhost|127\.0\.0\.1):{HEALTH_PORT}\b", command), command
        assert isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL"), test

    def test_no_image_tag_is_latest(self) -> None:
        """No service of the file floats on a :latest (or missing) tag."""
        for name, service in _compose()["services"].items():
            image = str(service.get("image", ""))
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image!r}"


GATEWAY_FILE = COMPOSE_FILE.with_name("docker-compose.collector.yml")
COLLECTOR_IMAGE = re.compile(r"^otel/opentelemetry-collector-contrib:\d+\.\d+\.\d+$")


class TestCollectorCompose:
    """docker-compose.collector.yml: a Collector every host exports to, in
    front of Jaeger; traces go on to Jaeger, logs to a file."""

    def services(self) -> dict[str, Any]:
        data = yaml.safe_load(GATEWAY_FILE.read_text(encoding="utf-8"))
        return data["services"]

    def config(self) -> dict[str, Any]:
        (mount,) = [
            v for v in self.services()["collector"]["volumes"] if "config.yaml" in v
        ]
        source, target, *_ = mount.split(":")
        assert target == "/etc/otelcol-contrib/config.yaml"  # the image's default
        return yaml.safe_load((GATEWAY_FILE.parent / source).read_text("utf-8"))

    def test_a_pinned_collector_publishes_otlp_and_jaeger_its_ui(self) -> None:
        services = self.services()
        assert COLLECTOR_IMAGE.match(services["collector"]["image"])
        assert IMAGE.match(services["jaeger"]["image"])
        collector = [_published(p) for p in services["collector"]["ports"]]
        assert {(4317, 4317, "tcp"), (4318, 4318, "tcp")} <= set(collector)
        jaeger = [_published(p) for p in services["jaeger"]["ports"]]
        assert jaeger == [(16686, 16686, "tcp")]  # OTLP goes through the gateway

    def test_traces_go_to_jaeger_and_logs_to_a_file(self) -> None:
        config = self.config()
        grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        assert grpc == "0.0.0.0:4317"  # reachable from other hosts
        pipelines = config["service"]["pipelines"]
        (traces,) = pipelines["traces"]["exporters"]
        exporter = config["exporters"][traces]
        assert traces.split("/")[0] == "otlp"
        host, port = exporter["endpoint"].split(":")
        assert host in self.services() and port == "4317"
        assert exporter["tls"]["insecure"] is True  # inside the compose network
        (logs,) = pipelines["logs"]["exporters"]
        assert logs.split("/")[0] == "file"
        assert config["exporters"][logs]["path"].startswith("/data/")
        assert "./collector-data:/data" in self.services()["collector"]["volumes"]
