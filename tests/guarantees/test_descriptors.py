"""Guarantee 13: mptrace owns no descriptor the program may close and reuse."""

from __future__ import annotations

import re

from conftest import logs_of, read_jsonl
from workers import close_every_descriptor_then_log

import mptrace


class TestClosedDescriptor:
    def test_a_child_that_closes_every_descriptor_gets_no_record_in_its_files(
        self, start_method, jsonl, tmp_path
    ):
        """A child logs, closes descriptors 3..4095 (as daemonizing code does),
        opens 12 files and logs 20 more records: each file holds only the
        program's own bytes, the 20 records reach the file through a new
        stream, and the child says once that it reconnected."""
        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        ctx = mptrace.get_context(start_method)
        err_path = tmp_path / "child.err"
        data = tmp_path / "data"
        data.mkdir()
        child = ctx.Process(
            target=close_every_descriptor_then_log, args=(str(data), str(err_path))
        )
        child.start()
        child.join(60)
        session.shutdown()
        assert child.exitcode == 0
        files = sorted(data.iterdir())
        assert len(files) >= 12
        for path in files:
            assert path.read_bytes() == b"the program's own data\n", path.name
        events = read_jsonl(jsonl)
        assert len(logs_of(events, pid=child.pid, event="before the close")) == 1
        after = logs_of(events, pid=child.pid, event="after the close")
        assert sorted(e["i"] for e in after) == list(range(20))
        err = err_path.read_text()
        said = re.findall(
            rf"process {child.pid} found its stream's descriptor \d+ closed", err
        )
        assert len(said) == 1, err[-2000:]

    def test_shutdown_neither_writes_nor_closes_a_descriptor_the_program_reopened(
        self, jsonl, tmp_path
    ):
        """The owner's stream descriptor is closed and a file opened under its
        number: shutdown leaves that file open and empty, and the owner's later
        record still reaches the listener."""
        import logging
        import os

        from mptrace._participant import participant as _participant

        session = mptrace.init(exporters=[f"jsonl:{jsonl}"])
        log = logging.getLogger("parent")
        log.info("before the close")
        fd = _participant.current().stream._fd
        assert fd is not None
        os.close(fd)
        path = tmp_path / "program.txt"
        opened = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(opened, fd)  # the file under the stream's number
        os.close(opened)
        try:
            log.info("after the close")
            session.shutdown()
            os.fstat(fd)  # still open: raises OSError if shutdown closed it
        finally:
            os.close(fd)
        assert path.read_bytes() == b""
        assert len(logs_of(read_jsonl(jsonl), event="after the close")) == 1
