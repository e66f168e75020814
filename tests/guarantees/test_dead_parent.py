"""Guarantee 4: when the parent is SIGKILLed, the listener drains, flushes and exits within 2 s,
and removes the session's private directory the parent could not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
from conftest import logs_of, read_jsonl, wait_gone

PARENT = textwrap.dedent(
    """
    import logging, sys, threading
    sys.path.insert(0, {tests!r})
    import mptrace
    from workers import log_n

    if __name__ == "__main__":
        session = mptrace.init(exporters=["jsonl:" + {path!r}])
        ctx = mptrace.get_context({method!r})
        children = [ctx.Process(target=log_n, args=(500, "child-%d" % i)) for i in range(2)]
        for p in children:
            p.start()
        for p in children:
            p.join(60)
        for i in range(500):
            logging.getLogger("parent").info("before the kill", extra={{"i": i}})
        print(session.listener_pid, session.address, flush=True)
        threading.Event().wait()  # until killed
    """
)


class TestParentKilled:
    def test_listener_drains_and_exits_within_two_seconds(self, start_method, tmp_path):
        """SIGKILL the parent: everything logged before it is in the file; the listener is gone in 2 s."""
        path = tmp_path / "events.jsonl"
        script = tmp_path / "parent.py"
        tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        script.write_text(
            PARENT.format(tests=tests, path=str(path), method=start_method)
        )
        parent = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True
        )
        try:
            line = parent.stdout.readline().split()
            assert len(line) == 2 and line[0].isdigit(), line
            listener, address = int(line[0]), line[1]
            assert psutil.pid_exists(listener)
            parent.kill()
            parent.wait(10)
            t0 = time.monotonic()
            gone = wait_gone(listener, 2.0)
            elapsed = time.monotonic() - t0
        finally:
            parent.kill()
            parent.stdout.close()
        assert gone, (
            f"listener {listener} still running 2 s after its parent was killed"
        )
        assert elapsed < 2.0
        assert not os.path.exists(os.path.dirname(address)), (
            "the private directory is left behind"
        )
        events = read_jsonl(path)
        assert len(logs_of(events, event="before the kill")) == 500
        for i in range(2):
            assert len(logs_of(events, tag=f"child-{i}")) == 500
