"""The JSON-lines file under log rotation: renames, SIGHUP, size, and runs told apart."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
from pathlib import Path

import pytest
from conftest import logs_of, read_jsonl
from workers import log_tagged

import mptrace
from mptrace.exceptions import ConfigurationError

log = logging.getLogger("tests.rotate")


def _child(method: str, tag: str) -> None:
    p = mptrace.get_context(method).Process(target=log_tagged, args=(tag,))
    p.start()
    p.join(60)
    assert p.exitcode == 0


class TestRename:
    def test_records_after_a_rename_go_to_a_new_file_at_the_path(
        self, jsonl, start_method
    ):
        """logrotate's default: the file is moved; later records start a new one."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as s:
            log.info("before", extra={"tag": "parent"})
            assert s.force_flush()
            os.rename(jsonl, f"{jsonl}.1")
            log.info("after", extra={"tag": "parent"})
            _child(start_method, "child-after")
        moved, new = read_jsonl(f"{jsonl}.1"), read_jsonl(jsonl)
        assert logs_of(moved, event="before") and not logs_of(new, event="before")
        assert logs_of(new, event="after") and not logs_of(moved, event="after")
        assert logs_of(new, tag="child-after")

    def test_a_deleted_file_is_created_again(self, jsonl):
        """A file removed mid run comes back at the path with the later records."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as s:
            log.info("before")
            assert s.force_flush()
            os.remove(jsonl)
            log.info("after")
        assert logs_of(read_jsonl(jsonl), event="after")

    def test_sighup_reopens_and_the_listener_goes_on(self, jsonl):
        """A SIGHUP to the listener reopens the file instead of ending the listener."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as s:
            log.info("before")
            assert s.force_flush()
            assert s.listener_pid is not None
            os.kill(s.listener_pid, signal.SIGHUP)
            log.info("after hup")
            assert s.force_flush()
            assert s.active
        events = read_jsonl(jsonl)
        assert logs_of(events, event="before") and logs_of(events, event="after hup")


class TestSize:
    def test_rotates_by_size_keeps_backups_and_compresses(self, jsonl):
        """max_bytes, backups and compress: bounded files, gzip, oldest dropped."""
        target = f"jsonl:{jsonl}?max_bytes=4KB&backups=2&compress=gz"
        with mptrace.init(exporters=[target]) as s:
            for batch in range(12):
                for i in range(10):
                    log.info("sized", extra={"batch": batch, "i": i, "pad": "x" * 60})
                assert s.force_flush()
        assert os.path.exists(f"{jsonl}.1.gz") and os.path.exists(f"{jsonl}.2.gz")
        assert not os.path.exists(f"{jsonl}.3.gz")
        assert not os.path.exists(f"{jsonl}.1")
        assert os.path.getsize(jsonl) <= 4000
        kept = []
        for n in (2, 1):
            with gzip.open(f"{jsonl}.{n}.gz", "rt") as f:
                kept += [json.loads(line) for line in f]
        kept += read_jsonl(jsonl)
        batches = [e["batch"] for e in logs_of(kept, event="sized")]
        assert batches == sorted(batches)  # in order across the files
        assert batches[-1] == 11 and batches[0] > 0  # the oldest went

    @pytest.mark.parametrize(
        "options",
        [
            "max_bytes=ten",
            "max_bytes=10XB",
            "backups=3",
            "max_bytes=1MB&backups=0",
            "max_bytes=1MB&compress=zip",
            "max_bytes=1MB&keep=2",
            "max_bytes=1MB&max_bytes=2MB",
        ],
    )
    def test_bad_options_fail_at_init_saying_what_is_allowed(self, jsonl, options):
        with pytest.raises(ConfigurationError, match="max_bytes=10MB&backups=5"):
            mptrace.init(exporters=[f"jsonl:{jsonl}?{options}"])

    def test_sizes_with_units(self):
        from mptrace._listener.rotate import parse_size

        assert parse_size("10MB") == 10_000_000
        assert parse_size("1 KiB") == 1024
        assert parse_size("2.5kb") == 2500
        assert parse_size("123") == 123


class TestRuns:
    def test_every_line_carries_the_run_and_spans_say_it_as_instance_id(
        self, jsonl, start_method
    ):
        """run on every line; service.instance.id on every span's resource, equal."""
        runs = []
        for _ in range(2):  # two runs appended to one file
            with mptrace.init(exporters=[f"jsonl:{jsonl}"]) as s:
                log.info("hello")
                _child(start_method, "c")
            runs.append(s.run_id)
        events = read_jsonl(jsonl)
        assert {e["run"] for e in events} == set(runs) and len(set(runs)) == 2
        spans = [e for e in events if e["kind"] == "span"]
        assert spans
        for span in spans:
            assert span["resource"]["service.instance.id"] == span["run"]


def test_path_with_options_is_a_path_without_them(tmp_path: Path):
    """The file is the part before '?'."""
    path = tmp_path / "r.jsonl"
    with mptrace.init(exporters=[f"jsonl:{path}?max_bytes=1MB"]):
        log.info("x")
    assert logs_of(read_jsonl(path), event="x")
