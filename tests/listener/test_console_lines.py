"""The console beside the program's own output: whole lines, bounded entries.

The listener writes the console on the program's stderr while the program
writes there too. Its lines must go out whole (a write of at most PIPE_BUF
bytes to a pipe is never interleaved with another process's), and one huge
record must not flood it: the console cuts it and says how much, the JSON
lines keep it whole.
"""

from __future__ import annotations

import fcntl
import logging
import re
import subprocess
import sys
import textwrap

from conftest import logs_of, read_jsonl

import mptrace

PROGRAM = textwrap.dedent(
    """
    import logging, os, sys, multiprocessing as mp
    import mptrace

    # The terminal is the console exporter's alone: no last resort printing.
    logging.getLogger().addHandler(logging.NullHandler())

    def chatter(n):
        log = logging.getLogger("chatter")
        for i in range(n):
            log.warning("console-line %d %s", i, "m" * 200)

    if __name__ == "__main__":
        with mptrace.init(exporters=["console"]):
            ctx = mp.get_context(sys.argv[1])
            children = [ctx.Process(target=chatter, args=(1000,)) for _ in range(2)]
            for p in children:
                p.start()
            line = ("PROGRAM-LINE " + "p" * 300 + " END\\n").encode()
            while any(p.is_alive() for p in children):
                os.write(2, line)  # 318 bytes: one write no one can split
            for p in children:
                p.join()
            for _ in range(200):
                os.write(2, line)
    """
)
#: The smallest pipe Linux gives: the listener's writes fill it often.
SMALL_PIPE = 4096
_CONSOLE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[")


def test_console_lines_and_the_programs_lines_never_split_each_other(
    start_method, tmp_path
):
    """Two children log 2000 console lines while the program writes its own
    lines to the same 4 KiB pipe: every line that comes out is one or the
    other, whole (the listener's batches used to go out as one long write,
    which the program's lines split wherever the pipe filled)."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, str(script), start_method],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    fcntl.fcntl(proc.stderr.fileno(), fcntl.F_SETPIPE_SZ, SMALL_PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    program = ("PROGRAM-LINE " + "p" * 300 + " END").encode()
    ours = 0
    for line in err.splitlines():
        if line.startswith(b"PROGRAM-LINE"):
            assert line == program, line[:400]
        elif b"console-line" in line:
            ours += 1
            assert _CONSOLE.match(line.decode()), line[:400]
            assert b"PROGRAM" not in line and line.endswith(b"m" * 200), line[:400]
    assert ours == 2000


def test_a_huge_record_is_cut_on_the_console_and_whole_in_the_file(jsonl, capfd):
    """A 1 MB exception text: the console shows its beginning and end and how
    many characters it left out; the JSON lines hold all of it."""
    huge = "x" * 1_000_000
    with mptrace.init(exporters=["console", f"jsonl:{jsonl}"]):
        try:
            raise ValueError(huge)
        except ValueError:
            logging.getLogger("big").exception("a huge failure")
    err = capfd.readouterr().err
    assert "a huge failure" in err and "ValueError: xxx" in err
    (cut,) = re.findall(r"\[mptrace: ([\d,]+) characters cut here", err)
    assert 990_000 < int(cut.replace(",", "")) < 1_000_000
    assert len(err) < 20_000, len(err)
    (record,) = logs_of(read_jsonl(jsonl), event="a huge failure")
    assert huge in record["exc"]["traceback"]
