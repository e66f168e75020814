"""Beside the program's own OpenTelemetry pipeline: every span once, one service.

A real program (its own interpreter, so that it can set the global provider)
sets a ``TracerProvider`` with a ``BatchSpanProcessor`` and an OTLP exporter
pointed at the test receiver, then runs children and pool tasks through
mptrace under each start method. Every span mptrace saw must reach the
program's backend exactly once, under the program's service name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_jsonl
from otlp_receiver import OtlpReceiver

PROGRAM = textwrap.dedent(
    """
    import os, sys
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    import mptrace
    from workers import log_tagged, tr_square

    def setup():
        endpoint = os.environ["TEST_ENDPOINT"]
        if os.environ["TEST_PROTOCOL"] == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter)
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter)
            exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
        provider = TracerProvider(resource=Resource.create({"service.name": "user-svc"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        return provider

    # As opentelemetry-instrument does: every interpreter, children's too.
    if os.environ.get("TEST_AT_IMPORT"):
        provider = setup()

    if __name__ == "__main__":
        method, jsonl, extra = sys.argv[1:4]
        if not os.environ.get("TEST_AT_IMPORT"):
            provider = setup()
        exporters = ["jsonl:" + jsonl] + ([extra] if extra != "-" else [])
        with mptrace.init(exporters=exporters):
            with trace.get_tracer("user").start_as_current_span("user-root"):
                ctx = mptrace.get_context(method)
                p = ctx.Process(target=log_tagged, args=("c",))
                p.start()
                p.join(60)
                with ctx.Pool(2) as pool:
                    pool.map(tr_square, range(4), chunksize=1)
        provider.shutdown()
    """
)


def _run(
    tmp_path: Path,
    method: str,
    protocol: str,
    endpoint: str,
    extra: str,
    at_import: bool = False,
) -> Path:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    jsonl = tmp_path / "run.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    env.update(TEST_PROTOCOL=protocol, TEST_ENDPOINT=endpoint)
    if at_import:
        env["TEST_AT_IMPORT"] = "1"
    done = subprocess.run(
        [sys.executable, str(script), method, str(jsonl), extra],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return jsonl


class TestProgramsProvider:
    @pytest.mark.parametrize("protocol", ["http", "grpc"])
    def test_every_span_reaches_the_programs_exporter_once(
        self, tmp_path, start_method, protocol
    ):
        """The program's BatchSpanProcessor + OTLP exporter get every span id once."""
        with OtlpReceiver(grpc=protocol == "grpc", http=protocol == "http") as rx:
            endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
            jsonl = _run(tmp_path, start_method, protocol, endpoint, "-")
            seen = {e["span_id"] for e in read_jsonl(jsonl) if e["kind"] == "span"}
            rx.wait_for_spans(lambda spans: {s["span_id"] for s in spans} >= seen, 10)
            spans = rx.spans()
        ids = [s["span_id"] for s in spans]
        assert sorted(ids) == sorted(seen), "each span exactly once"
        assert len(seen) >= 9  # root, child process, its span, pool workers, tasks
        assert {s["resource"]["service.name"] for s in spans} == {"user-svc"}

    def test_a_provider_set_in_every_interpreter_sends_each_span_once(
        self, tmp_path, start_method
    ):
        """As under opentelemetry-instrument: children set the provider too; still once."""
        with OtlpReceiver(grpc=False) as rx:
            jsonl = _run(
                tmp_path, start_method, "http", rx.http_endpoint, "-", at_import=True
            )
            seen = {e["span_id"] for e in read_jsonl(jsonl) if e["kind"] == "span"}
            rx.wait_for_spans(lambda spans: {s["span_id"] for s in spans} >= seen, 10)
            spans = rx.spans()
        assert sorted(s["span_id"] for s in spans) == sorted(seen)
        assert {s["resource"]["service.name"] for s in spans} == {"user-svc"}

    def test_mptraces_otlp_beside_the_programs_sends_no_span_twice(
        self, tmp_path, start_method
    ):
        """With mptrace's otlp exporter at the same backend, still each span once."""
        with OtlpReceiver(grpc=False) as rx:
            jsonl = _run(
                tmp_path, start_method, "http", rx.http_endpoint,
                "otlp+http:" + rx.http_endpoint,
            )  # fmt: skip
            seen = {e["span_id"] for e in read_jsonl(jsonl) if e["kind"] == "span"}
            rx.wait_for_spans(lambda spans: {s["span_id"] for s in spans} >= seen, 10)
            spans = rx.spans()
            assert rx.wait_for_logs(1)  # mptrace's exporter still sends the logs
        assert sorted(s["span_id"] for s in spans) == sorted(seen)


class TestLateProvider:
    def test_a_provider_set_after_init_is_told_on_stderr(self, jsonl, capsys):
        """OpenTelemetry keeps the first provider; mptrace says so instead of silence."""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        import mptrace

        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            trace.set_tracer_provider(TracerProvider())
            trace.set_tracer_provider(TracerProvider())
        err = capsys.readouterr().err
        assert err.count("TracerProvider was set after mptrace.init()") == 1, err


class TestOneResource:
    def test_a_processs_logs_and_spans_share_one_resource(self, start_method, jsonl):
        """Over OTLP, a pool worker's log records carry the resource of its spans."""
        from workers import tr_square

        import mptrace

        with OtlpReceiver(grpc=False) as rx:
            exporters = [f"jsonl:{jsonl}", f"otlp+http:{rx.http_endpoint}"]
            with mptrace.init(exporters=exporters):
                with mptrace.get_context(start_method).Pool(1) as pool:
                    pool.map(tr_square, range(2))
            spans = rx.wait_for_spans(
                lambda s: any(x["name"].startswith("task") for x in s)
            )
            logs = rx.wait_for_logs(lambda r: any(x["body"] == "squaring" for x in r))
        worker_log = next(x for x in logs if x["body"] == "squaring")
        pid = worker_log["resource"]["process.pid"]
        worker_spans = [s for s in spans if s["resource"]["process.pid"] == pid]
        assert worker_spans
        for span in worker_spans:
            assert span["resource"] == worker_log["resource"]
        assert worker_log["resource"]["service.instance.id"]
