"""Lock waits across processes, under fork, spawn and forkserver.

The parent holds a lock, starts a child, waits for the child's word that it
is about to take the lock, holds it 0.2 s more and lets go: the child's
wait is a ``lock wait`` event of 0.2 s or more, naming where the lock was
made. Two waits on an Event nobody sets time out; a lock nobody else takes
records nothing. ``mptrace report`` names the child and the place.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_jsonl
from wait_work import waiter

import mptrace

EVENT = "lock wait"


def _run(jsonl: Path, start_method: str) -> tuple[int, dict[str, str]]:
    """The run: the child's pid, and the places its locks were made."""
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        ctx = multiprocessing.get_context(start_method)
        line = sys._getframe().f_lineno
        held = ctx.Lock()
        never = ctx.Event()
        free = ctx.Lock()
        ready = ctx.Event()
        places = {
            name: f"{__file__}:{line + i}"
            for i, name in enumerate(("held", "never", "free"), 1)
        }
        held.acquire()
        child = ctx.Process(target=waiter, args=(held, never, free, ready),
                            name="waiter")  # fmt: skip
        child.start()
        assert ready.wait(30)
        time.sleep(0.2)  # held while the child waits: what is measured
        held.release()
        child.join(30)
        assert child.exitcode == 0
    return child.pid, places


def _waits_of(events: list[dict], pid: int) -> list[dict]:
    return [
        item["attributes"]
        for e in events if e.get("kind") == "span" and e.get("pid") == pid
        for item in e.get("events") or [] if item["name"] == EVENT
    ]  # fmt: skip


class TestLockWaits:
    def test_the_childs_wait_and_timeouts_are_recorded(self, jsonl, start_method):
        pid, places = _run(jsonl, start_method)
        found = _waits_of(read_jsonl(jsonl), pid)
        acquired = [w for w in found if w["mptrace.wait.outcome"] == "acquired"]
        timed_out = [w for w in found if w["mptrace.wait.outcome"] == "timed out"]
        assert len(acquired) == 1, found
        (wait,) = acquired
        assert wait["mptrace.wait.duration"] >= 0.2
        assert wait["mptrace.wait.kind"] == "Lock"
        assert wait["mptrace.wait.place"] == places["held"]
        assert len(timed_out) == 2, found
        for w in timed_out:
            assert w["mptrace.wait.place"] == places["never"]
            assert w["mptrace.wait.kind"] == "Event"
            assert 0.04 <= w["mptrace.wait.duration"] < 1
        assert len(found) == 3  # the free lock: nothing

    def test_report_names_the_process_and_the_place(
        self, jsonl, start_method, tmp_path
    ):
        pid, places = _run(jsonl, start_method)
        html = tmp_path / "report.html"
        done = subprocess.run(
            [sys.executable, "-m", "mptrace", "report", str(jsonl), "--html", str(html)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        waiting = done.stdout.split("Waiting", 1)[1]
        per_process = waiting.split("contended locks", 1)[0]
        assert f"waiter[{pid}] waited" in per_process
        assert f"most at {places['held']} (Lock" in per_process
        contended = waiting.split("contended locks", 1)[1]
        assert f"{places['held']} (Lock): 1 wait" in contended
        assert f"{places['never']} (Event): 2 waits" in contended
        assert "2 timed out" in contended
        page = html.read_text().split("id='waiting'", 1)[1]
        assert f"waiter[{pid}] waited" in page and places["held"] in page
