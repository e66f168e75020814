"""The console exporter, seen as a person sees it: a real program's stderr.

A small script (written to a temporary folder and run as its own process) starts
a console session, logs, starts two children through ``mptrace.get_context``
that log too (one of them an exception), joins them and shuts down. Its stderr
is read through a pipe, or through a pseudo-terminal as a person's terminal.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import read_pty

from mptrace._render.lines import PROCESS_COLOURS, RESET, process_colour
from mptrace._render.palette import COLOURS, FAIL_MARK, Palette

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    import mptrace

    # The terminal is left to mptrace's console, in every process (a spawned
    # child imports this too): without a handler of the program's, logging's
    # last resort would print the warnings and errors itself.
    logging.getLogger().addHandler(logging.NullHandler())

    def child(n):
        log = logging.getLogger("child")
        for i in range(3):
            log.info("writer=%d line %d", os.getpid(), i)
        mptrace.get_logger("child.s").warning("writer=%d structlog", os.getpid(), n=n)
        if n == 1:
            try:
                1 / 0
            except ZeroDivisionError:
                log.exception("writer=%d failed", os.getpid())

    if __name__ == "__main__":
        with mptrace.init(exporters=["console"], level="INFO"):
            logging.getLogger("parent").info("writer=%d parent", os.getpid())
            ctx = mptrace.get_context(sys.argv[1])
            children = [ctx.Process(target=child, args=(n,)) for n in (1, 2)]
            for p in children:
                p.start()
            for p in children:
                p.join(60)
        names = {str(p.pid): p.name for p in children}
        names[str(os.getpid())] = "MainProcess"
        print(json.dumps({"names": names, "exitcodes": [p.exitcode for p in children],
                          "failing": children[0].pid}))
    """
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADER = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(\w+)\s*\] (\S+)\[(\d+)\] "
)
TIMEOUT = 60.0


@dataclass
class Output:
    """What the script printed: stdout facts and stderr lines."""

    names: dict[int, str]
    failing: int
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.replace("\r\n", "\n").split("\n")

    def event_lines(self) -> list[tuple[str, str]]:
        """(raw line, line without escapes) of every line that starts a log event."""
        out = []
        for raw in self.lines:
            plain = ANSI.sub("", raw)
            match = HEADER.match(plain)
            if match and not plain[match.end() :].startswith(("span ", "lifecycle ")):
                out.append((raw, plain))
        return out


def _env(no_color: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    if no_color:
        env["NO_COLOR"] = "1"
    return env


def run_script(folder: Path, method: str, mode: str) -> Output:
    script = folder / "console_demo.py"
    script.write_text(SCRIPT)
    argv = [sys.executable, str(script), method]
    if mode == "pipe":
        proc = subprocess.run(
            argv, capture_output=True, timeout=TIMEOUT, env=_env(False), check=False
        )
        stdout, stderr = proc.stdout, proc.stderr
        returncode = proc.returncode
    else:
        master, slave = pty.openpty()
        try:
            with subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=slave,
                env=_env(no_color=mode == "pty-no-color"),
            ) as popen:
                os.close(slave)
                slave = -1
                stderr = read_pty(master, popen, TIMEOUT)
                assert popen.stdout is not None
                stdout = popen.stdout.read()
                returncode = popen.wait(TIMEOUT)
        finally:
            os.close(master)
            if slave != -1:
                os.close(slave)
    text = stderr.decode("utf-8")
    assert returncode == 0, text
    facts: dict[str, Any] = json.loads(stdout)
    assert facts["exitcodes"] == [0, 0], text
    return Output(
        {int(k): v for k, v in facts["names"].items()}, facts["failing"], text
    )


@pytest.fixture(scope="module")
def _outputs() -> dict[tuple[str, str], Output]:
    return {}


@pytest.fixture
def output(request, start_method, _outputs, tmp_path_factory) -> Output:
    """The script's output under *start_method* and the mode the test names (pipe by default)."""
    mode = getattr(request, "param", "pipe")
    key = (start_method, mode)
    if key not in _outputs:
        _outputs[key] = run_script(
            tmp_path_factory.mktemp("console"), start_method, mode
        )
    return _outputs[key]


def _check_tags(out: Output) -> None:
    lines = out.event_lines()
    writers = []
    for _raw, plain in lines:
        match = HEADER.match(plain)
        assert match is not None
        name, pid = match.group(2), int(match.group(3))
        (writer,) = re.findall(r"writer=(\d+)", plain)
        assert int(writer) == pid, plain
        assert out.names[pid] == name, plain
        writers.append(pid)
    parent = next(pid for pid, name in out.names.items() if name == "MainProcess")
    expected = {parent: 1, out.failing: 5}
    expected.update({pid: 4 for pid in out.names if pid not in expected})
    assert {pid: writers.count(pid) for pid in set(writers)} == expected


class TestPlainConsole:
    def test_each_line_names_its_process_and_pid(self, output):
        """Every line says name[pid] of the process that wrote it; none is missing."""
        _check_tags(output)

    def test_no_ansi_escapes_when_stderr_is_not_a_terminal(self, output):
        """Through a pipe the output has no escape sequence at all."""
        assert "\x1b" not in output.stderr
        assert output.event_lines()

    def test_traceback_appears_under_its_line(self, output):
        """An exception's traceback follows its event line, before the next event."""
        lines = output.lines
        (at,) = [
            i for i, ln in enumerate(lines) if f"writer={output.failing} failed" in ln
        ]
        assert HEADER.match(lines[at]) and "[error" in lines[at]
        block = []
        for line in lines[at + 1 :]:
            if HEADER.match(line) or not line or line == "mptrace: processes":
                break
            block.append(line)
        assert block[0] == "Traceback (most recent call last):"
        assert any("in child" in ln for ln in block)
        assert any(ln.strip() == "1 / 0" for ln in block)
        assert block[-1] == "ZeroDivisionError: division by zero"

    def test_structlog_values_are_shown(self, output):
        """Key-values of structlog events appear on their line as key=value."""
        warnings = [p for _r, p in output.event_lines() if "structlog" in p]
        assert len(warnings) == 2
        assert all("[warning" in p and re.search(r" n=[12]$", p) for p in warnings)


@pytest.mark.parametrize("output", ["pty"], indirect=True)
class TestTerminal:
    def test_each_line_names_its_process_and_pid(self, output):
        """On a terminal too, every line names its writer."""
        _check_tags(Output(output.names, output.failing, ANSI.sub("", output.stderr)))

    def test_lines_are_coloured(self, output):
        """On a terminal every event line carries colour escapes."""
        lines = output.event_lines()
        assert lines
        for raw, _plain in lines:
            assert "\x1b[" in raw and RESET in raw

    def test_a_process_keeps_its_colour_on_every_line(self, output):
        """The tag of each process has one colour of the palette on all its lines."""
        seen: dict[int, set[str]] = {}
        for raw, plain in output.event_lines():
            pid = int(HEADER.match(plain).group(3))  # type: ignore[union-attr]
            tag = f"{output.names[pid]}[{pid}]"
            found = re.findall(
                r"(\x1b\[[0-9;]*m)" + re.escape(tag) + re.escape(RESET), raw
            )
            assert len(found) == 1, raw
            seen.setdefault(pid, set()).add(found[0])
        assert set(seen) == set(output.names)
        for pid, colours in seen.items():
            assert len(colours) == 1 and colours <= set(COLOURS), pid

    def test_processes_with_different_colours_show_different_colours(self, output):
        """Every process of the run shows in a colour of its own (a colour hashed
        from the pid gave three processes two colours)."""
        shown = set()
        for raw, _plain in output.event_lines():
            shown.add(
                re.search(r"(\x1b\[[0-9;]*m)\S+\[\d+\]" + re.escape(RESET), raw).group(
                    1
                )
            )  # type: ignore[union-attr]
        assert len(shown) == len(output.names) == 3

    def test_traceback_is_still_under_its_line(self, output):
        """The traceback follows its event line on a terminal as well."""
        text = ANSI.sub("", output.stderr).replace("\r\n", "\n")
        line = next(
            ln for ln in text.split("\n") if f"writer={output.failing} failed" in ln
        )
        after = text.split(line + "\n", 1)[1]
        assert after.startswith("Traceback (most recent call last):\n")


@pytest.mark.parametrize("output", ["pty-no-color"], indirect=True)
class TestNoColor:
    def test_no_color_turns_colours_off_on_a_terminal(self, output):
        """NO_COLOR=1: a terminal gets no escape sequence at all."""
        assert "\x1b" not in output.stderr
        _check_tags(output)


class TestProcessColour:
    def test_deterministic(self):
        """process_colour gives the same colour for the same pid, as int or str."""
        for pid in (1, 4242, 99999):
            assert (
                process_colour(pid) == process_colour(pid) == process_colour(str(pid))
            )
            assert process_colour(pid) in PROCESS_COLOURS

    def test_spread_over_all_colours(self):
        """Over many pids every colour is used, and two pids rarely share one."""
        pids = range(10_000, 12_000)
        colours = [process_colour(p) for p in pids]
        assert set(colours) == set(PROCESS_COLOURS)
        same_as_next = sum(a == b for a, b in itertools.pairwise(colours))
        assert same_as_next / len(colours) < 0.2  # ~1/11 if spread evenly


class TestPalette:
    def test_colours_in_order_of_first_appearance(self):
        """The first 16 processes of a run get 16 different colours, in order."""
        palette = Palette()
        pids = [4242, 17, 99999, 5] + list(range(100, 112))
        assert [palette.colour(p) for p in pids] == list(COLOURS)
        assert palette.colour("17") == palette.colour(17) == COLOURS[1]

    def test_a_failed_process_is_marked(self):
        """After fail(pid), its tag carries the red mark; others do not."""
        palette = Palette()
        palette.paint(1, "a[1]")
        palette.fail(2)
        assert palette.paint(2, "b[2]").startswith(FAIL_MARK)
        assert not palette.paint(1, "a[1]").startswith(FAIL_MARK)


class TestColourRule:
    @pytest.mark.parametrize(
        "env, expected",
        [
            ({}, False),
            ({"FORCE_COLOR": "1"}, True),
            ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),
        ],
    )
    def test_no_color_then_force_color_then_the_terminal(
        self, monkeypatch, env, expected
    ):
        """A file is not a terminal: no colours, unless FORCE_COLOR says so;
        NO_COLOR wins over both (the console and the mptrace command alike)."""
        import io

        from mptrace._listener.console_sink import ConsoleSink

        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.delenv("FORCE_COLOR", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert ConsoleSink(io.StringIO()).colours is expected
