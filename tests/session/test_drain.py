"""The end of a session while another process still writes: what was sent
before shutdown() is in the sinks when it returns, and shutdown() waits for
no pause in that process's output (a chatty one never pauses)."""

from __future__ import annotations

import time
from pathlib import Path

import workers
from conftest import logs_of, read_jsonl

import mptrace


def test_a_process_that_never_pauses_does_not_hold_up_the_end(
    tmp_path: Path, start_method: str
) -> None:
    out = tmp_path / "run.jsonl"
    session = mptrace.init(
        exporters=[f"jsonl:{out}"], level="INFO", shutdown_timeout=30
    )
    ctx = mptrace.get_context(start_method)
    marked, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=workers.chatter, args=(marked, stop))
    child.start()
    try:
        assert marked.wait(60), "the child did not start logging"
        started = time.monotonic()
        session.shutdown()
        took = time.monotonic() - started
        # It used to read until the child paused for 0.25 s: never, so until
        # shutdown_timeout (30 s) passed.
        assert took < 15, f"shutdown took {took:.1f} s"
        assert logs_of(read_jsonl(out), event="first"), (
            "a record sent before is missing"
        )
    finally:
        stop.set()
        child.join(60)
    assert child.exitcode == 0
