"""The sink seam: the registry, user sinks, OpenTelemetry exporters as sinks, memory."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
import sinks_for_tests
import workers
from conftest import logs_of

import mptrace
from mptrace._listener import registry as _sinks
from mptrace.sinks import SinkSpec, sink


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class TestRegistry:
    """init() checks every exporter name through the same table the listener builds from."""

    @pytest.mark.parametrize(
        ("text", "name", "target", "logs"),
        [
            ("console", "console", None, True),
            ("memory", "memory", None, True),
            ("otlp", "otlp", None, True),
            ("otlp+grpc:http://h:4317", "otlp+grpc", "http://h:4317", True),
            ("otlp+http", "otlp+http", None, True),
            ("jaeger", "otlp", None, False),
            ("jaeger+http:http://h:4318", "otlp+http", "http://h:4318", False),
        ],
    )
    def test_built_in_names(self, text, name, target, logs):
        """Each built-in name gives its spec; jaeger sends spans only."""
        assert _sinks.check(text) == SinkSpec(name, target, logs=logs)

    def test_every_built_in_name_builds_in_the_listener(self):
        """The listener's build table has an entry for every spec check can make."""
        for key in _sinks.REGISTRY:
            spec = _sinks.check(key if key != "jsonl" else "jsonl:x.jsonl")
            assert spec.name in _sinks.REGISTRY

    @pytest.mark.parametrize(
        ("spec", "says"),
        [
            ("nonsense", "Unknown exporter 'nonsense'"),
            ("no_such_module_here:Sink", "Unknown exporter 'no_such_module_here:Sink'"),
            ("sinks_for_tests:NoSuchClass", "NoSuchClass"),
            ("console:target", "takes no target"),
            (42, "not int"),
            ("__main__:Sink", "__main__"),
        ],
    )
    def test_bad_names_fail_at_once_saying_what_is_allowed(self, spec, says):
        """A bad exporter is a ConfigurationError naming it and listing what is valid."""
        with pytest.raises(mptrace.ConfigurationError) as info:
            mptrace.init(exporters=[spec])
        assert says in str(info.value)
        assert mptrace.get_session() is None

    def test_unpicklable_arguments_are_refused(self):
        """Arguments that cannot travel to the listener fail at init()."""
        with pytest.raises(mptrace.ConfigurationError, match="cannot be sent"):
            mptrace.init(exporters=[sink(sinks_for_tests.RecordingSink, lambda: 1)])

    def test_a_spec_pickles(self):
        """A SinkSpec crosses to the listener by pickle."""
        spec = sink("sinks_for_tests:RecordingSink", "/x", tag="t")
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert (
            sink(sinks_for_tests.RecordingSink).name == "sinks_for_tests:RecordingSink"
        )


class TestUserSinks:
    def test_a_user_sink_receives_every_kind_and_the_summary(
        self, tmp_path, start_method
    ):
        """A class named with arguments gets logs, spans, lifecycle and the table."""
        out = tmp_path / "sink.jsonl"
        spec = sink("sinks_for_tests:RecordingSink", str(out), tag="mine")
        with mptrace.init(exporters=[spec]):
            logging.getLogger("app").warning("hello from the parent")
            child = mptrace.get_context(start_method).Process(
                target=workers.log_n, args=(3, "user-sink")
            )
            child.start()
            child.join(60)
        rows = read_rows(out)
        events = [r["event"] for r in rows if "event" in r]
        assert {r["sink"] for r in rows} == {"mine"}
        assert logs_of(events, event="hello from the parent")
        assert len(logs_of(events, tag="user-sink", pid=child.pid)) == 3
        assert {"span", "lifecycle"} <= {e["kind"] for e in events}
        [summary] = [r["summary"] for r in rows if "summary" in r]
        assert [row["pid"] for row in summary] == [child.pid]
        assert rows[-1] == {"sink": "mine", "shutdown": True}

    def test_a_span_exporter_class_is_a_sink(self, tmp_path, start_method):
        """An OpenTelemetry SpanExporter named in exporters= gets every span."""
        out = tmp_path / "spans.jsonl"
        spec = sink(sinks_for_tests.FileSpanExporter, str(out))
        with mptrace.init("exporter-test", exporters=[spec, "memory"]) as session:
            child = mptrace.get_context(start_method).Process(
                target=workers.log_n, args=(1, "x")
            )
            child.start()
            child.join(60)
        got = read_rows(out)
        sent = [e for e in session.events() if e["kind"] == "span"]
        assert sorted(r["span_id"] for r in got) == sorted(e["span_id"] for e in sent)
        assert f"process {child.name}" in {r["name"] for r in got}
        assert {r["service"] for r in got} == {"exporter-test"}

    def test_a_failing_sink_is_counted_and_the_others_still_get_everything(
        self, tmp_path, capfd
    ):
        """A sink that raises costs a warning and a count, not the listener."""
        with mptrace.init(
            exporters=["sinks_for_tests:RaisingSink", "memory"]
        ) as session:
            for i in range(5):
                logging.getLogger("app").warning("record %d", i)
        assert len(logs_of(session.events(), logger="app")) == 5
        err = capfd.readouterr().err
        assert "exporter sinks_for_tests:RaisingSink failed" in err
        assert "batches an exporter failed to take" in err

    def test_a_sink_that_cannot_be_built_fails_init(self):
        """A sink whose constructor raises is a ConfigurationError at init()."""
        with pytest.raises(mptrace.ConfigurationError, match="no such device"):
            mptrace.init(exporters=["sinks_for_tests:BrokenSink"])
        assert mptrace.get_session() is None


class TestMemorySink:
    def test_events_during_and_after_the_session(self):
        """events() flushes while the session runs and keeps what it had after."""
        session = mptrace.init(exporters=["memory"])
        logging.getLogger("app").warning("first")
        assert [e["event"] for e in logs_of(session.events(), logger="app")] == [
            "first"
        ]
        logging.getLogger("app").warning("second")
        session.shutdown()
        got = [e["event"] for e in logs_of(session.events(), logger="app")]
        assert got == ["first", "second"]
        assert all(e["run"] == session.run_id for e in session.events())

    def test_force_flush_is_false_after_shutdown(self):
        """force_flush() on a closed session says it could not flush."""
        session = mptrace.init(exporters=["memory"])
        assert session.force_flush() is True
        session.shutdown()
        assert session.force_flush() is False


def test_a_listener_taking_over_cuts_the_half_line_a_killed_one_left(tmp_path):
    """The dead listener's last line, cut mid-write, goes; whole lines stay,
    and a file that ends its lines, or is not one of JSON lines, is left."""
    from mptrace._listener.jsonl import cut_partial_line

    path = tmp_path / "run.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert cut_partial_line(str(path)) == len(b'{"c": ')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert cut_partial_line(str(path)) == 0
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    other = tmp_path / "other"
    other.write_bytes(b"x" * (2 * 1024 * 1024))  # no newline at all
    assert cut_partial_line(str(other)) == 0
    assert other.stat().st_size == 2 * 1024 * 1024
    assert cut_partial_line(str(tmp_path / "missing")) == 0
