"""Console output where ``sys.stderr`` is not file descriptor 2 (notebooks, IDEs, capsys)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from echo_workers import report_threads
from workers import log_tagged

import mptrace

log = logging.getLogger("tests.echo")


class TestConsoleToSysStderr:
    def test_console_lines_reach_a_replaced_sys_stderr(self, capsys, start_method):
        """With sys.stderr replaced in-process, the parent's and a child's lines reach it."""
        with mptrace.init(exporters=["console"]) as s:
            log.warning("to the cell")
            p = mptrace.get_context(start_method).Process(
                target=log_tagged, args=("child line",)
            )
            p.start()
            p.join(60)
            assert s.force_flush()
            early = capsys.readouterr().err
            assert "to the cell" in early  # before the end, too
        err = early + capsys.readouterr().err
        assert "tagged" in err and "child line" in err

    def test_no_relay_thread_is_left(self, capsys, jsonl):
        """After shutdown, no thread of mptrace's is left in the program."""
        with mptrace.init(exporters=["console", f"jsonl:{jsonl}"]):
            log.warning("x")
        assert not [t for t in threading.enumerate() if t.name.startswith("mptrace")]

    def test_the_relay_is_no_thread_of_the_programs(self, capsys, start_method):
        """A program (or a test suite) that counts its threads while the
        relay runs, and in a child, counts only its own."""
        before = threading.enumerate()
        with mptrace.init(exporters=["console"]) as s:
            log.warning("x")
            assert s.force_flush()
            assert threading.enumerate() == before
            ctx = mptrace.get_context(start_method)
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=report_threads, args=(w,))
            p.start()
            w.close()
            assert r.poll(60)
            assert r.recv() == ["MainThread"]
            p.join(60)
            assert threading.enumerate() == before


NOTEBOOK = textwrap.dedent(
    """
    import io, logging, sys
    import mptrace

    if __name__ == "__main__":
        cell = io.StringIO()
        sys.stderr = cell  # as Jupyter does: a stream with no fd 2 behind it
        with mptrace.init(exporters=["console"]):
            logging.getLogger("nb").warning("shown in the cell")
        sys.stderr = sys.__stderr__
        print(cell.getvalue())
    """
)


def test_a_notebook_like_program_shows_console_lines_in_its_cell(tmp_path: Path):
    """A program that swapped sys.stderr for its own stream gets the lines there."""
    script = tmp_path / "nb.py"
    script.write_text(NOTEBOOK)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "shown in the cell" in done.stdout
    assert "shown in the cell" not in done.stderr
