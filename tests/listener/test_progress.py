"""The progress line of a running map, seen on a real terminal and in a file.

A program runs ``Pool.map``, ``Pool.starmap``, ``Pool.imap`` and
``ProcessPoolExecutor.map`` over 30, 26, 22 and 18 items that take a few
milliseconds each (their work), one of them failing. Its stderr is a
pseudo-terminal, read as a person's terminal shows it, or a file.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_pty

TESTS = str(Path(__file__).resolve().parents[1])
TIMEOUT = 90.0
PROGRAM = textwrap.dedent(
    """
    import concurrent.futures, sys
    import mptrace
    import workers

    if __name__ == "__main__":
        with mptrace.init(exporters=["console"]):
            ctx = mptrace.get_context(sys.argv[1])
            with ctx.Pool(2) as pool:
                try:
                    pool.map(workers.slow_square, range(30), 1)
                except ValueError:
                    pass  # 13 fails: the line says so
                pool.starmap(workers.slow_square, [(x, 0.03) for x in range(14, 40)], 1)
                list(pool.imap(workers.slow_square, range(14, 36)))
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
                list(ex.map(workers.slow_square, range(14, 32)))
    """
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR") and not k.startswith("MPTRACE_")
    }
    env["PYTHONPATH"] = TESTS
    return env


def on_a_terminal(program: Path, method: str) -> str:
    master, slave = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, str(program), method],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=_env(),
        ) as proc:
            os.close(slave)
            slave = -1
            out = read_pty(master, proc, TIMEOUT)
            assert proc.wait(TIMEOUT) == 0, out
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    return out.decode("utf-8")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "maps.py"
    path.write_text(PROGRAM)
    return path


class TestOnATerminal:
    def test_each_map_shows_its_progress(self, program, start_method):
        """Each of the four maps draws 'N/TOTAL items' with a rate; the map with
        a failing item says so; the failure's record prints above the line."""
        text = on_a_terminal(program, start_method)
        for total in (30, 26, 22, 18):
            done = [int(n) for n in re.findall(rf"(\d+)/{total} items  [\d.]+/s", text)]
            assert done and all(0 < n <= total for n in done), (total, text[-2000:])
            assert done == sorted(done), total  # it only goes forward
        assert re.search(r"/30 items .* 1 failed", text)
        assert "left" in text  # time left, once the rate is known
        # The record of the failure is a line of its own, not mixed into the bar:
        (line,) = [
            ln for ln in ANSI.sub("", text).split("\r\n")
            if "task workers.slow_square raised ValueError" in ln
        ]  # fmt: skip
        assert "items" not in line.split("\r")[-1]
        # Gone at the end: the table starts on a clean line.
        assert "\rmptrace: processes" in ANSI.sub("", text)


class TestNotATerminal:
    def test_nothing_of_it_in_a_file(self, program, tmp_path):
        """stderr to a file: the records, no progress text, no cursor control."""
        err = tmp_path / "stderr.txt"
        with open(err, "wb") as f:
            subprocess.run(
                [sys.executable, str(program), "fork"],
                stderr=f,
                stdout=subprocess.DEVNULL,
                env=_env(),
                timeout=TIMEOUT,
                check=True,
            )
        text = err.read_text()
        assert "task workers.slow_square raised ValueError" in text
        assert " items " not in text and "\x1b[?25l" not in text and "\r" not in text
