"""Guarantee 7: a process that forks while other threads log produces healthy children."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from conftest import logs_of, read_jsonl
from workers import fork_while_threads_log

# fork is where the hazard lives; the other methods start fresh interpreters
# and are checked with fewer children to keep the suite quick.
CHILDREN = {"fork": 40, "spawn": 6, "forkserver": 10}


class TestForkWhileLogging:
    def test_children_forked_mid_logging_log_and_exit(
        self, start_method, session, jsonl
    ):
        """4 threads log without pause while 40 children start: none hangs, every record arrives."""
        # Only mptrace: pytest's own capture handlers write through a buffered
        # stream whose lock a fork can leave held (the hazard itself). The
        # records are INFO, below what logging's last resort prints.
        logging.getLogger().handlers[:] = []
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a threaded process may deadlock:
            # that is the very hazard this test shows mptrace avoids.
            warnings.simplefilter("ignore", DeprecationWarning)
            codes = fork_while_threads_log(
                start_method, CHILDREN[start_method], threading.Event()
            )
        assert codes == [0] * CHILDREN[start_method]
        session.shutdown()
        events = read_jsonl(jsonl)
        for i in range(CHILDREN[start_method]):
            assert len(logs_of(events, tag=f"forked-{i}")) == 1, i
        assert logs_of(events, event="thread spinning")


NO_WARNING_SCRIPT = """
import multiprocessing, os, sys
import mptrace
from workers import log_tagged, tr_square

if __name__ == "__main__":
    method = sys.argv[1]
    with mptrace.init(exporters=["jsonl:" + sys.argv[2]]):
        ctx = mptrace.get_context(method)
        for i in range(3):  # the exit monitor runs from the first child on
            p = ctx.Process(target=log_tagged, args=(f"child-{i}",))
            p.start()
            p.join(60)
            assert p.exitcode == 0, p.exitcode
        with ctx.Pool(2) as pool:
            assert pool.map(tr_square, range(6)) == [x * x for x in range(6)]
        running = ctx.Process(target=log_tagged, args=("running",))
        running.start()  # a child still watched while the program forks
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        plain = multiprocessing.get_context("fork").Process(target=abs, args=(1,))
        plain.start()
        plain.join(60)
        running.join(60)
    print("ok")
"""


class TestNoForkWarning:
    def test_no_deprecation_warning_at_fork(self, tmp_path, start_method):
        """A program forking beside mptrace gets no DeprecationWarning (3.12+).

        Python 3.12+ warns when a multi-threaded process forks; mptrace's monitor
        thread is not alive at any fork, so nothing of ours makes it warn. The
        warning is shown with ``-W always``: under ``-W error`` CPython reports
        the error it becomes nowhere, so a test could not see it fail.
        """
        script = tmp_path / "prog.py"
        script.write_text(NO_WARNING_SCRIPT)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        done = subprocess.run(
            [sys.executable, "-W", "always::DeprecationWarning", str(script),
             start_method, str(tmp_path / "run.jsonl")],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
        assert "DeprecationWarning" not in done.stderr, done.stderr
        assert "multi-threaded" not in done.stderr, done.stderr
