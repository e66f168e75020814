"""init() in a process that belongs to no session starts one of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import logs_of, read_jsonl

PROGRAM = textwrap.dedent(
    """
    import multiprocessing, sys
    sys.path.insert(0, {tests!r})
    from workers import init_in_plain_child

    if __name__ == "__main__":
        ctx = multiprocessing.get_context({method!r})
        child = ctx.Process(target=init_in_plain_child, args=({path!r},))
        child.start()
        child.join(60)
        print(child.pid, child.exitcode)
    """
)


def test_init_in_a_child_of_a_plain_program_starts_its_own_session(
    start_method, tmp_path
):
    """A child started by a plain multiprocessing script, with no session in
    its parent, gets a real session (under spawn and forkserver it used to get
    a JoinedSession of a session that did not exist: no file, every record
    lost)."""
    path = tmp_path / "child.jsonl"
    script = tmp_path / "plain.py"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script.write_text(PROGRAM.format(tests=tests, method=start_method, path=str(path)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    pid, exitcode = map(int, done.stdout.split())
    assert exitcode == 0, done.stderr
    (record,) = logs_of(read_jsonl(path), event="from a plain child")
    assert record["session"] == "Session"
    assert record["pid"] == pid
