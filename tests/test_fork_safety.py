"""Guarantee 7: a process that forks while other threads log produces healthy children."""

from __future__ import annotations

import logging
import threading
import warnings

from conftest import logs_of, read_jsonl
from workers import fork_while_threads_log

from mptrace._sources import FunnelHandler

# fork is where the hazard lives; the other methods start fresh interpreters
# and are checked with fewer children to keep the suite quick.
CHILDREN = {"fork": 40, "spawn": 6, "forkserver": 10}


class TestForkWhileLogging:
    def test_children_forked_mid_logging_log_and_exit(
        self, start_method, session, jsonl
    ):
        """4 threads log without pause while 40 children start: none hangs, every record arrives."""
        # Only mptrace's handler: pytest's own capture handlers write through a
        # buffered stream whose lock a fork can leave held (the hazard itself).
        root = logging.getLogger()
        root.handlers[:] = [h for h in root.handlers if isinstance(h, FunnelHandler)]
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
