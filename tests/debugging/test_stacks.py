"""A stuck run, diagnosed from inside: `mptrace stacks`, and stacks on SIGTERM.

Two processes deadlock on two ``multiprocessing.Lock``s taken in opposite
order (events make the order certain). Each process's stack must show the
very line where it waits, while the run goes and when it is stopped.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from conftest import read_jsonl

import mptrace
from mptrace._cli.stacks import running_sessions

DEADLOCK = textwrap.dedent(
    """
    import multiprocessing, sys

    def worker(first, second, holding, parent_holds):
        with first:
            holding.set()
            parent_holds.wait(60)
            second.acquire()  # the worker waits here

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        a, b = ctx.Lock(), ctx.Lock()
        holding, parent_holds = ctx.Event(), ctx.Event()
        p = ctx.Process(
            target=worker, args=(b, a, holding, parent_holds), name="worker-1"
        )
        p.start()
        holding.wait(60)
        with a:
            parent_holds.set()
            print("deadlocked", flush=True)
            b.acquire()  # the parent waits here
    """
)


def line_of(text: str, marker: str) -> int:
    (number,) = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    return number


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready = select.select([proc.stdout], [], [], timeout)[0]
    assert ready, f"the program said nothing within {timeout} s"
    return proc.stdout.readline()


def start(program: Path, method: str, *options: str) -> Any:
    """``mptrace run OPTIONS PROGRAM METHOD``, in a process group of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "mptrace", "run", *options, str(program), method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def end(proc: subprocess.Popen[str]) -> str:
    """Kill what is left of the run; its stderr."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, err = proc.communicate(timeout=60)
    return err


def stacks_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mptrace", "stacks", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def blocks(output: str) -> dict[str, str]:
    """The command's output by process: ``name[pid]`` -> its block."""
    found = {}
    for block in output.strip().split("\n\n"):
        found[block.split(" ", 1)[0]] = block
    return found


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def test_a_deadlock_seen_live_and_when_stopped(start_method, tmp_path):
    """`mptrace stacks` on a live run shows the parent and the worker, each at
    its acquire(); SIGTERM to the owner then leaves a `stacks` event per
    process, at the same lines, in the JSON lines."""
    program = tmp_path / "deadlock.py"
    program.write_text(DEADLOCK)
    parent_line = line_of(DEADLOCK, "the parent waits here")
    worker_line = line_of(DEADLOCK, "the worker waits here")
    path = tmp_path / "run.jsonl"
    proc = start(program, start_method, "-e", f"jsonl:{path}")
    try:
        assert read_line(proc, 60).strip() == "deadlocked"
        (folder,) = running_sessions(proc.pid)
        result = stacks_command(str(proc.pid))
        assert result.returncode == 0, result.stderr
        by_process = blocks(result.stdout)
        parent = by_process.pop(f"MainProcess[{proc.pid}]")
        assert f'File "{program}", line {parent_line} in <module>' in parent
        ((name, worker),) = by_process.items()
        assert name.startswith("worker-1[")
        assert f'File "{program}", line {worker_line} in worker' in worker
        # The program's view: mptrace's frames and its monitor's thread are
        # left out, and said to be; --all-frames shows them.
        package = os.path.dirname(os.path.abspath(mptrace.__file__)) + os.sep
        assert package not in result.stdout, result.stdout
        assert "(and 1 thread of mptrace's)" in parent.splitlines()[0], parent
        everything = stacks_command("--all-frames", str(proc.pid))
        assert package in everything.stdout, everything.stdout
        assert ": 2 threads" in blocks(everything.stdout)[f"MainProcess[{proc.pid}]"]
        # The same by the session folder.
        again = stacks_command(folder)
        assert again.returncode == 0, again.stderr
        assert set(blocks(again.stdout)) == {f"MainProcess[{proc.pid}]", name}

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == -signal.SIGTERM
        wait_for(lambda: not os.path.exists(folder), 30, "the listener did not end")
    finally:
        end(proc)
    stopped = [
        e for e in read_jsonl(path)
        if e.get("kind") == "stacks" and e.get("reason") == "stopped"
    ]  # fmt: skip
    by_pid = {e["pid"]: e for e in stopped}
    assert len(by_pid) == len(stopped) == 2, stopped
    worker_pid = int(name.split("[")[1].rstrip("]"))
    for pid, line, function in (
        (proc.pid, parent_line, "<module>"),
        (worker_pid, worker_line, "worker"),
    ):
        frames = [f for t in by_pid[pid]["threads"] for f in t["frames"]]
        assert {"file": str(program), "line": line, "function": function} in frames
    asked = [e for e in read_jsonl(path) if e.get("reason") == "asked"]
    assert {e["pid"] for e in asked} == {proc.pid, worker_pid}


JOINER = textwrap.dedent(
    """
    import multiprocessing, sys, time

    def sleeper():
        time.sleep(60)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        p = ctx.Process(target=sleeper, daemon=True)
        p.start()
        print("joining", flush=True)
        p.join()  # interrupted here
    """
)


def test_ctrl_c_in_join_shows_no_frame_of_mptrace(start_method, tmp_path):
    """KeyboardInterrupt in Process.join() under `mptrace run`: the traceback
    the program prints ends in the stdlib, with no frame of mptrace's
    instrumented join between."""
    program = tmp_path / "joiner.py"
    program.write_text(JOINER)
    proc = start(program, start_method)
    try:
        assert read_line(proc, 60).strip() == "joining"
        # Into the join's wait: the stacks say when the owner is there.
        deadline = time.monotonic() + 30
        while "in join" not in stacks_command(str(proc.pid)).stdout:
            assert time.monotonic() < deadline, "the owner never reached join()"
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(60) == -signal.SIGINT
    finally:
        err = end(proc)
    package = os.path.dirname(os.path.abspath(sys.modules["mptrace"].__file__))
    frames = [line for line in err.splitlines() if line.startswith('  File "')]
    assert f'  File "{program}", line {line_of(JOINER, "interrupted here")}, ' \
        "in <module>" in frames  # fmt: skip
    assert any("multiprocessing" in f for f in frames), err
    assert not [f for f in frames if package in f], err
    assert "KeyboardInterrupt" in err
