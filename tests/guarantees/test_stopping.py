"""Stopping: a signal to the whole process group, and a file that keeps up.

``timeout``, ``kill -TERM -PGID``, systemd and Kubernetes signal every
process of the group at once, the listener included. The listener must let
the program stop the way the program chooses, drain every stream, write its
files and leave no session folder behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import logs_of, read_jsonl, wait_gone

import mptrace
from mptrace._session import launch as _launch

PROGRAM = textwrap.dedent(
    """
    import logging, multiprocessing, signal, sys, threading
    import mptrace

    log = logging.getLogger("app")
    stop = threading.Event()

    def worker(name, ready, handle=True):
        if handle:
            signal.signal(signal.SIGTERM, lambda *a: stop.set())
        i = 0
        while not stop.is_set():
            log.info("tick", extra={{"who": name, "i": i}})
            i += 1
            if i == 200:
                ready.set()
        log.warning("stopping", extra={{"who": name, "i": i - 1}})

    if __name__ == "__main__":
        session = mptrace.init(exporters=["jsonl:" + {path!r}])
        ctx = multiprocessing.get_context({method!r})
        events = [ctx.Event() for _ in range(2)]
        children = [
            mptrace.get_context({method!r}).Process(target=worker, args=("child-%d" % n, e))
            for n, e in enumerate(events)
        ]
        for p in children:
            p.start()
        for e in events:
            e.wait(60)
        if {parent_handles!r}:  # before the test may signal
            signal.signal(signal.SIGTERM, lambda *a: stop.set())
        print(session.listener_pid, session.listener_config.session_dir, flush=True)
        worker("parent", threading.Event(), handle=False)
        for p in children:
            p.join(60)
        session.shutdown()
    """
)


def _ticks_are_whole(events: list[dict], who: str) -> list[int]:
    ticks = [e["i"] for e in logs_of(events, event="tick", who=who)]
    assert ticks == list(range(len(ticks))), f"{who}: ticks missing or repeated"
    return ticks


@pytest.mark.parametrize("parent_handles", [True, False], ids=["handled", "default"])
def test_sigterm_to_the_group_loses_nothing_and_leaves_no_folder(
    start_method, tmp_path, parent_handles
):
    """SIGTERM to the process group: every record logged before it is in the
    file, the program's own "stopping" records too, and no session folder is
    left, whether the parent handles the signal or dies of it."""
    path = tmp_path / "run.jsonl"
    script = tmp_path / "program.py"
    script.write_text(
        PROGRAM.format(
            path=str(path), method=start_method, parent_handles=parent_handles
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert len(line) == 2, line
        listener, folder = int(line[0]), line[1]
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(60)
        assert wait_gone(listener, 30), "the listener did not finish"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
    assert code == (0 if parent_handles else -signal.SIGTERM)
    assert not os.path.exists(folder), "the session folder was left behind"
    events = read_jsonl(path)
    for who in ("child-0", "child-1"):
        ticks = _ticks_are_whole(events, who)
        assert len(ticks) >= 200
        (stopping,) = logs_of(events, event="stopping", who=who)
        assert stopping["i"] == ticks[-1]
    ticks = _ticks_are_whole(events, "parent")
    if parent_handles:
        (stopping,) = logs_of(events, event="stopping", who="parent")
        assert stopping["i"] == (ticks[-1] if ticks else -1)  # -1: stopped at once
    assert not [e for e in events if e.get("lost")], "the listener counted losses"


def test_a_record_reaches_the_file_while_others_keep_coming(tmp_path):
    """Under steady input the file keeps up: each marker is in the file
    within a second of being logged (it used to wait for 0.5 s of silence,
    that is for the end of the run)."""
    path = tmp_path / "run.jsonl"
    done = threading.Event()
    log = mptrace.get_logger("steady")

    def steady() -> None:
        while not done.wait(0.01):
            log.info("steady")

    with mptrace.init(exporters=[f"jsonl:{path}"]):
        load = threading.Thread(target=steady)
        load.start()
        try:
            for n in range(3):
                log.info("marker", n=n)
                needle = b'"n":%d,' % n
                deadline = time.monotonic() + 1.0
                while needle not in path.read_bytes():
                    assert time.monotonic() < deadline, f"marker {n} not written in 1 s"
                    time.sleep(0.005)
        finally:
            done.set()
            load.join()


def test_a_folder_left_by_a_killed_session_is_removed_by_the_next(tmp_path):
    """SIGKILL to the whole group lets nothing run; the next session removes
    the folder once its owner is dead and the folder is old enough."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import mptrace, sys, threading; s = mptrace.init(exporters=[]); "
            "print(s.listener_pid, s.listener_config.session_dir, flush=True); "
            "threading.Event().wait()",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        listener, folder = child.stdout.readline().split()
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
        assert wait_gone(int(listener), 30)
    finally:
        child.stdout.close()
    assert os.path.isdir(folder)
    fresh = _launch.make_dir()
    try:
        assert os.path.isdir(folder), "a young folder must stay: its listener may drain"
        old = time.time() - _launch.STALE_AFTER - 1
        os.utime(folder, (old, old))
        second = _launch.make_dir()
        os.rmdir(second)
        assert not os.path.exists(folder)
    finally:
        os.rmdir(fresh)
