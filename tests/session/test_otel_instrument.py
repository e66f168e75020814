"""``opentelemetry-instrument python prog.py``: every span of every process, once.

The program uses plain ``multiprocessing`` and never imports mptrace; the
``opentelemetry_instrumentor`` entry point brings mptrace in. The pipeline is
the one the ``OTEL_*`` variables configure, pointed at the test receiver.
Every Python process started under ``opentelemetry-instrument`` runs its
``sitecustomize``, children and the fork server included: only the program
starts a session, so nothing arrives twice and everything arrives under one
service name, in one trace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import read_jsonl
from otlp_receiver import OtlpReceiver

from mptrace._session.launch import listener_env
from mptrace._session.otel_instrumentor import starts_session

PROGRAM = textwrap.dedent(
    """
    import logging, multiprocessing, sys

    def work(x):
        logging.getLogger("work").warning("working on %s", x)
        return x * x

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        p = ctx.Process(target=work, args=(1,))
        p.start()
        p.join(60)
        with ctx.Pool(2) as pool:
            print(pool.map(work, range(4), chunksize=1))
    """
)

#: The run's span, the Process's, two pool workers', the map's and its four tasks.
EXPECTED = Counter(
    {"svc": 1, "process": 3, "Pool.map __main__.work": 1, "task __main__.work": 4}
)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

pytestmark = pytest.mark.skipif(
    shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    is None,
    reason="opentelemetry-distro is not installed",
)


def _run(
    tmp_path: Path,
    method: str,
    protocol: str,
    endpoint: str,
    script: str = "prog.py",
    **extra: str,
):
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "MPTRACE_", "TRACEPARENT", "TRACESTATE"))
    }
    env.pop("PYTHONPATH", None)
    env.update(
        OTEL_SERVICE_NAME="svc",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        **extra,
    )
    bindir = os.path.dirname(sys.executable)
    done = subprocess.run(
        [os.path.join(bindir, "opentelemetry-instrument"), sys.executable,
         str(tmp_path / script), method],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 4, 9]"
    # The program configured no logging: logging's last resort prints its
    # warnings as it does without mptrace, and mptrace prints no console.
    if script == "prog.py":  # a stage's own stderr is its starter's to read
        printed = [ln for ln in done.stderr.splitlines() if "working on" in ln]
        assert sorted(printed) == [f"working on {x}" for x in (0, 1, 1, 2, 3)], printed
    assert "not OTLP" not in done.stderr, done.stderr
    return done


def _kind(span: dict) -> str:
    name = span["name"]
    return "process" if name.startswith("process ") else name


def _spans(rx: OtlpReceiver) -> list[dict]:
    def complete(spans: list[dict]) -> bool:
        return Counter(_kind(s) for s in spans) >= EXPECTED

    rx.wait_for_spans(complete, 10)
    return rx.spans()


def _check(spans: list[dict]) -> None:
    ids = [s["span_id"] for s in spans]
    assert len(ids) == len(set(ids)), "a span arrived twice"
    assert Counter(_kind(s) for s in spans) == EXPECTED
    assert {s["resource"]["service.name"] for s in spans} == {"svc"}
    assert len({s["trace_id"] for s in spans}) == 1, "one run, one trace"
    # The program's spans leave through its SDK (no process.pid in its
    # resource); the tasks ran in pool workers and came through the listener.
    tasks = [s for s in spans if s["name"].startswith("task ")]
    assert all(s["resource"].get("process.pid") for s in tasks)


class TestOpentelemetryInstrument:
    def test_every_span_of_every_process_arrives_once(self, tmp_path, start_method):
        """Plain multiprocessing, no mptrace import: the OTEL_* pipeline gets it all."""
        with OtlpReceiver(grpc=False) as rx:
            _run(tmp_path, start_method, "http/protobuf", rx.http_endpoint)
            spans = _spans(rx)
        _check(spans)

    def test_over_grpc_and_beside_mptrace_exporters(self, tmp_path):
        """MPTRACE_EXPORTERS adds a file; the receiver still gets each span once."""
        jsonl = tmp_path / "run.jsonl"
        with OtlpReceiver(http=False) as rx:
            _run(
                tmp_path, "spawn", "grpc", rx.grpc_endpoint,
                MPTRACE_EXPORTERS=f"jsonl:{jsonl}",
            )  # fmt: skip
            spans = _spans(rx)
        _check(spans)
        seen = [e["span_id"] for e in read_jsonl(jsonl) if e["kind"] == "span"]
        assert sorted(s["span_id"] for s in spans) == sorted(seen)
        logs = [e for e in read_jsonl(jsonl) if e["kind"] == "log"]
        assert sum(e["event"].startswith("working on") for e in logs) == 5

    def test_traceparent_makes_the_run_a_child_of_the_callers_trace(self, tmp_path):
        with OtlpReceiver(grpc=False) as rx:
            _run(
                tmp_path, "fork", "http/protobuf", rx.http_endpoint,
                TRACEPARENT=TRACEPARENT,
            )  # fmt: skip
            spans = _spans(rx)
        _check(spans)
        root = next(s for s in spans if s["name"] == "svc")
        assert root["trace_id"] == TRACE_ID
        assert root["parent_span_id"] == "00f067aa0ba902b7"


STAGES = textwrap.dedent(
    """
    import subprocess, sys

    if __name__ == "__main__":
        stage = [sys.executable, "prog.py", sys.argv[1]]
        subprocess.run(stage, check=True, capture_output=True)
        print(subprocess.run(stage, capture_output=True, text=True).stdout.strip())
    """
)


class TestStages:
    def test_a_python_program_it_starts_joins_the_run(self, tmp_path, start_method):
        """Two Python stages started with subprocess: their spans arrive once,
        under the spans their starter made for them, in the run's trace."""
        (tmp_path / "stages.py").write_text(STAGES)
        with OtlpReceiver(grpc=False) as rx:
            _run(tmp_path, start_method, "http/protobuf", rx.http_endpoint,
                 script="stages.py")  # fmt: skip
            expected = EXPECTED + EXPECTED + Counter({"process": 2})
            expected["svc"] = 1

            def complete(spans: list[dict]) -> bool:
                return Counter(_kind(s) for s in spans) >= expected

            rx.wait_for_spans(complete, 10)
            spans = rx.spans()
        ids = [s["span_id"] for s in spans]
        assert len(ids) == len(set(ids)), "a span arrived twice"
        assert Counter(_kind(s) for s in spans) == expected
        assert {s["resource"]["service.name"] for s in spans} == {"svc"}
        assert len({s["trace_id"] for s in spans}) == 1, "one run, one trace"
        programs = [s for s in spans if s["name"] == "process prog.py"]
        maps = [s for s in spans if s["name"] == "Pool.map __main__.work"]
        assert {m["parent_span_id"] for m in maps} == {p["span_id"] for p in programs}


class TestWhereNoSessionStarts:
    @pytest.mark.parametrize(
        "argv",
        [
            ["py", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()",
             "--multiprocessing-fork"],
            ["py", "-c", "from multiprocessing.forkserver import main; main(3, 4)"],
            ["py", "-c", "from multiprocessing.resource_tracker import main;main(5)"],
            ["py", "-c", "import sys; from mptrace._listener.main import bootstrap"],
            ["py", "-m", "mptrace", "run", "app.py"],
            ["py", "/venv/bin/mptrace", "run", "app.py"],
        ],
    )  # fmt: skip
    def test_helpers_and_children_start_none(self, argv):
        assert not starts_session(argv)

    @pytest.mark.parametrize(
        "argv",
        [
            ["py", "app.py"],
            ["py", "-u", "-X", "dev", "app.py", "-c", "from multiprocessing"],
            ["py", "-m", "app"],
            ["py", "-c", "import app; app.main()"],
        ],
    )
    def test_a_program_starts_one(self, argv):
        assert starts_session(argv)

    def test_the_listener_runs_no_auto_instrumentation(self):
        auto = os.path.join(
            "site", "opentelemetry", "instrumentation", "auto_instrumentation"
        )
        env = listener_env({"PYTHONPATH": os.pathsep.join([auto, "/app"]), "A": "1"})
        # MPTRACE_OWN: mptrace's own interpreter, no program of the session.
        assert env == {"PYTHONPATH": "/app", "A": "1", "MPTRACE_OWN": "listener"}


class TestInstrumentor:
    def test_instrument_starts_a_session_and_uninstrument_ends_it(
        self, tmp_path, monkeypatch
    ):
        """In-process, as opentelemetry-instrument calls it; the program's init() joins."""
        import mptrace
        from mptrace._session.otel_instrumentor import MultiprocessingInstrumentor

        monkeypatch.setenv("MPTRACE_EXPORTERS", f"jsonl:{tmp_path / 'run.jsonl'}")
        instrumentor = MultiprocessingInstrumentor()
        assert not instrumentor.instrumentation_dependencies()
        instrumentor.instrument()
        try:
            session = mptrace.get_session()
            assert session is not None and session.active
            assert isinstance(mptrace.init(), mptrace.JoinedSession)
        finally:
            instrumentor.uninstrument()
        assert not session.active
        assert mptrace.get_session() is None or not mptrace.get_session().active
