"""The stacks signal: whose it is, what a dump says, where the stacks show."""

from __future__ import annotations

import ctypes
import faulthandler
import json
import multiprocessing
import os
import signal
import textwrap
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import read_jsonl
from test_stacks import end, line_of, read_line, stacks_command, start

import mptrace
from mptrace._cli.main import main
from mptrace._schema.stacks import parse
from mptrace.exceptions import ConfigurationError


def _waiter(ready: threading.Event, stop: threading.Event) -> None:
    ready.set()
    stop.wait(30)


def test_a_dump_parses_into_threads_and_frames(tmp_path):
    """faulthandler's own output, of two threads, read back frame by frame."""
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=_waiter, args=(ready, stop))
    thread.start()
    ready.wait(30)
    try:
        with open(tmp_path / "dump", "w+") as f:
            faulthandler.dump_traceback(file=f, all_threads=True)
            f.seek(0)
            threads = parse(f.read())
    finally:
        stop.set()
        thread.join(30)
    assert len(threads) >= 2
    (current,) = [t for t in threads if t["current"]]
    assert (
        current["frames"][0]["function"] == "test_a_dump_parses_into_threads_and_frames"
    )
    assert current["frames"][0]["file"] == __file__
    functions = [[f.get("function") for f in t["frames"]] for t in threads]
    assert any(fs[:2] == ["wait", "wait"] and "_waiter" in fs for fs in functions)


@pytest.mark.parametrize("value", ["SIGKILL", "SIGTERM", "nonsense", -3])
def test_a_signal_that_cannot_be_taken_fails_at_once(value):
    with pytest.raises(ConfigurationError, match="stacks signal"):
        mptrace.init(exporters=[], stacks_signal=value)


def test_the_environment_names_the_signal(monkeypatch):
    monkeypatch.setenv("MPTRACE_STACKS_SIGNAL", "SIGSTOP")
    with pytest.raises(ConfigurationError, match="MPTRACE_STACKS_SIGNAL"):
        mptrace.init(exporters=[])


def test_off_takes_no_signal_and_the_command_says_so():
    before = signal.getsignal(signal.SIGUSR2)
    with mptrace.init(exporters=[], stacks_signal=None) as session:
        folder = session.listener_config.session_dir
        assert not os.path.exists(os.path.join(folder, "stacks"))
        result = stacks_command(folder)
    assert result.returncode == 1
    assert "takes no stacks" in result.stderr
    assert not faulthandler.unregister(signal.SIGUSR2)  # never registered
    assert signal.getsignal(signal.SIGUSR2) is before


def test_the_programs_own_handlers_are_left_alone():
    """A handler the program set on the stacks signal or on SIGTERM stays
    its own; without one, the signal is taken while the session runs and
    given back at its end."""
    got: list[int] = []

    def handler(signum: int, frame: object) -> None:
        got.append(signum)

    old_usr2 = signal.signal(signal.SIGUSR2, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        with mptrace.init(exporters=[]) as session:
            where = os.path.join(session.listener_config.session_dir, "stacks")
            assert not os.path.exists(os.path.join(where, f"{os.getpid()}.ask"))
            os.kill(os.getpid(), signal.SIGUSR2)
            os.kill(os.getpid(), signal.SIGTERM)
            assert got == [signal.SIGUSR2, signal.SIGTERM]
            assert os.path.getsize(os.path.join(where, f"{os.getpid()}.stop")) == 0
    finally:
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGTERM, old_term)
    with mptrace.init(exporters=[]) as session:
        where = os.path.join(session.listener_config.session_dir, "stacks")
        os.kill(os.getpid(), signal.SIGUSR2)  # a dump, not a death
        assert "most recent call first" in open(f"{where}/{os.getpid()}.ask").read()
    assert not faulthandler.unregister(signal.SIGUSR2)  # given back


HOLDS_THE_GIL = textwrap.dedent(
    """
    import ctypes, threading
    threading.Thread(target=threading.Event().wait, daemon=True).start()
    print("holding", flush=True)
    libc = ctypes.PyDLL(None)
    while True:  # a signal's handler ends sleep() early: the program goes on
        libc.sleep(60)  # C code, the GIL held
    """
)


@pytest.mark.skipif(not hasattr(ctypes, "PyDLL"), reason="no ctypes.PyDLL")
def test_a_process_in_c_code_holding_the_gil_answers(tmp_path):
    """No Python code can run in that process, nor in its other threads:
    faulthandler still writes both threads' stacks."""
    program = tmp_path / "busy.py"
    program.write_text(HOLDS_THE_GIL)
    proc = start(program, "fork")
    try:
        assert read_line(proc, 60).strip() == "holding"
        result = stacks_command(str(proc.pid))
    finally:
        end(proc)
    assert result.returncode == 0, result.stderr
    line = line_of(HOLDS_THE_GIL, "the GIL held")
    assert f'File "{program}", line {line} in <module>' in result.stdout
    assert "2 threads" in result.stdout


def test_the_report_has_a_stacks_section(tmp_path):
    frames = [{"file": "app.py", "line": 7, "function": "work"}]
    event = {
        "kind": "stacks", "ts": 1, "level": "info", "logger": "mptrace",
        "event": "stacks of w[5] (asked)", "process": "w", "pid": 5,
        "reason": "asked", "run": "r",
        "threads": [{"id": "0x1", "current": True, "frames": frames}],
    }  # fmt: skip
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(event) + "\n")
    html = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(path), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "Stacks" in result.output
    assert "w[5] (asked): 1 thread" in result.output
    assert 'File "app.py", line 7 in work' in result.output
    page = html.read_text()
    assert "<h2>Stacks</h2>" in page and "File &quot;app.py&quot;, line 7" in page
    assert read_jsonl(path)[0]["kind"] == "stacks"


def _straggler(started: Any, release: Any) -> None:
    started.set()
    release.wait(60)  # the straggler waits here


def test_shutdown_that_waits_in_vain_takes_the_stacks(start_method, jsonl):
    """shutdown_timeout passes with a child still running: the run's file
    says where it waits."""
    ctx = multiprocessing.get_context(start_method)
    started, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_straggler, args=(started, release), name="straggler")
    try:
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], shutdown_timeout=0.5):
            child.start()
            assert started.wait(60)
    finally:
        release.set()
        child.join(60)
    (event,) = [e for e in read_jsonl(jsonl) if e.get("kind") == "stacks"
                and e["pid"] == child.pid]  # fmt: skip
    assert event["reason"] == "shutdown-waited"
    assert event["process"] == "straggler"
    frames = [f for t in event["threads"] for f in t["frames"]]
    line = line_of(open(__file__).read(), "the straggler waits " + "here")
    assert {"file": __file__, "line": line, "function": "_straggler"} in frames


def test_the_text_leaves_out_mptraces_frames_and_threads_unless_asked():
    """A dump as a process of the run takes it: the program's thread with
    mptrace's frames between its own, and a thread mptrace started."""
    from mptrace._render.stacks import stacks_lines

    package = os.path.dirname(os.path.abspath(mptrace.__file__))
    stdlib = os.path.dirname(os.__file__)

    def frame(path, line, function):
        return {"file": path, "line": line, "function": function}

    program = [
        frame(os.path.join(stdlib, "multiprocessing", "synchronize.py"), 95, "wait"),
        frame(os.path.join(package, "_instrument", "waits.py"), 250, "wait"),
        frame("/srv/app/pipeline.py", 12, "main"),
        frame(os.path.join(package, "_participant", "frames.py"), 71, "call"),
        frame("/srv/app/pipeline.py", 30, "<module>"),
    ]
    monitor = [
        frame(os.path.join(stdlib, "selectors.py"), 415, "select"),
        frame(os.path.join(package, "_instrument", "monitor.py"), 325, "_step"),
        frame(os.path.join(stdlib, "threading.py"), 1038, "_bootstrap"),
    ]
    event = {"process": "MainProcess", "pid": 7, "reason": "asked", "threads": [
        {"id": "0x2", "current": False, "frames": monitor},
        {"id": "0x1", "current": True, "frames": program},
    ]}  # fmt: skip
    lines = stacks_lines(event)
    assert lines[0] == "MainProcess[7] (asked): 1 thread (and 1 thread of mptrace's)"
    assert [ln.strip() for ln in lines[2:]] == [
        f'File "{program[0]["file"]}", line 95 in wait',
        'File "/srv/app/pipeline.py", line 12 in main',
        'File "/srv/app/pipeline.py", line 30 in <module>',
        "(2 frames of mptrace's left out)",
    ]
    everything = stacks_lines(event, all_frames=True)
    assert everything[0] == "MainProcess[7] (asked): 2 threads"
    assert sum(ln.startswith("    File ") for ln in everything) == 8
