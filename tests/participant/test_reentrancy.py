"""Logging re-entered from the same thread: a signal handler, a ``__repr__``.

A record logged while this very thread is inside the funnel used to wait
forever on the stream's lock. Now it is delivered right after the outer one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import logs_of, read_jsonl

PROGRAM = textwrap.dedent(
    """
    import logging, signal, sys
    import mptrace

    calls = 0
    log = logging.getLogger("app")

    def on_alarm(*args):
        global calls
        calls += 1
        log.warning("got signal", extra={"n": calls})

    class Noisy:
        def __repr__(self):
            log.warning("repr called")
            return "noisy"

    for run in range(20):
        with mptrace.init(exporters=["jsonl:" + sys.argv[1]]):
            signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
            for i in range(3000):
                log.info("tick", extra={"run": run, "i": i})
            signal.setitimer(signal.ITIMER_REAL, 0)
            mptrace.get_logger("app").info("outer", logger=Noisy(), value=Noisy())
    print(calls)
    """
)


def test_twenty_runs_of_signal_handlers_that_log_never_hang(tmp_path):
    """20 sessions in a row, each interrupted by signals thousands of times
    while logging, and a structlog value whose repr logs: the program ends,
    and every record, the handlers' included, is in the file once."""
    path = tmp_path / "run.jsonl"
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    done = subprocess.run(
        [sys.executable, str(script), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    calls = int(done.stdout)
    events = read_jsonl(path)
    assert calls > 20, "the timer hardly fired; the test proves nothing"
    signals = logs_of(events, event="got signal")
    assert sorted(e["n"] for e in signals) == list(range(1, calls + 1))
    ticks = logs_of(events, event="tick")
    assert len(ticks) == 20 * 3000
    assert len(logs_of(events, event="outer")) == 20
    assert len(logs_of(events, event="repr called")) == 40
    assert not [e for e in events if e.get("lost")]
