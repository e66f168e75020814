"""The program's logging configuration is the program's, whatever the order.

``tests/programs/own_logging.py`` configures its logging after mptrace
joined (its own ``init()`` first, or under ``mptrace run``), or not at all,
and logs from the main thread, a child, a thread and a failing future
callback. Its own file and its stderr must be byte for byte what they are
without mptrace, and mptrace must still receive every record at its level.
"""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import logs_of, read_jsonl
from workers import user_logging_lines

import mptrace

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = str(PROGRAMS / "own_logging.py")
TAGS = ("parent", "child", "thread", "end")


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "MPTRACE_", "PYTEST_"))
    }


class Ran:
    def __init__(self, folder: Path, done: subprocess.CompletedProcess[bytes]):
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        log = folder / "app.log"
        self.log = log.read_bytes() if log.exists() else None
        self.stderr = done.stderr
        jsonl = folder / "events.jsonl"
        self.events = read_jsonl(jsonl) if jsonl.exists() else []


def run(tmp_path: Path, name: str, method: str, how: str, *runner: str) -> Ran:
    """Run the program once in a folder of its own; *runner* goes before it."""
    folder = tmp_path / name
    folder.mkdir()
    jsonl = folder / "events.jsonl"
    if runner:  # mptrace run [options]: the program is unmodified
        command = [*runner, PROGRAM, method, how, str(folder / "app.log")]
    else:
        command = [PROGRAM, method, how, str(folder / "app.log"), str(jsonl)]
    done = subprocess.run(
        [sys.executable, *command],
        capture_output=True, timeout=120, cwd=folder, env=_env(),
    )  # fmt: skip
    return Ran(folder, done)


def mptrace_run(jsonl: Path, *exporters: str) -> tuple[str, ...]:
    return ("-m", "mptrace", "run", "-e", f"jsonl:{jsonl}", *exporters)


def assert_mptrace_got_everything(events: list[dict[str, Any]]) -> None:
    """Every record of every process at INFO and above, none below, each once."""
    for tag in TAGS:
        for logger in ("app", "app.db"):
            for level in ("info", "warning", "error"):
                found = logs_of(events, logger=logger, event=f"{level} {tag}")
                assert len(found) == 1, (tag, logger, level, len(found))
                assert found[0]["level"] == level
    assert not [e for e in logs_of(events) if e["level"] == "debug"]
    (callback,) = logs_of(events, logger="concurrent.futures")
    assert "ZeroDivisionError: callback of 7" in callback["exc"]["traceback"]


class TestBasicConfigAfterMptrace:
    def test_after_init_the_programs_file_is_byte_identical(
        self, tmp_path, start_method
    ):
        """init() then basicConfig(file, DEBUG, format): the file is the plain run's."""
        plain = run(tmp_path, "plain", start_method, "basic")
        traced = run(tmp_path, "traced", start_method, "init-basic")
        assert plain.log is not None and b"DEBUG|app|MainProcess" in plain.log
        assert traced.log == plain.log
        assert traced.stderr == plain.stderr
        assert_mptrace_got_everything(traced.events)

    def test_under_mptrace_run_the_programs_file_is_byte_identical(
        self, tmp_path, start_method
    ):
        """The same unmodified program under ``mptrace run``: the same file."""
        plain = run(tmp_path, "plain", start_method, "basic")
        jsonl = tmp_path / "run.jsonl"
        traced = run(tmp_path, "run", start_method, "basic", *mptrace_run(jsonl))
        assert traced.log == plain.log
        assert traced.stderr == plain.stderr
        assert_mptrace_got_everything(read_jsonl(jsonl))

    def test_force_after_init_is_the_programs(self, tmp_path, start_method):
        """basicConfig() then basicConfig(force=True) after init(): as without mptrace."""
        plain = run(tmp_path, "plain", start_method, "force")
        traced = run(tmp_path, "traced", start_method, "init-force")
        assert plain.log is not None
        assert traced.log == plain.log
        assert traced.stderr == plain.stderr
        assert_mptrace_got_everything(traced.events)


class TestLastResort:
    def test_after_init_warnings_reach_stderr_as_without_mptrace(
        self, tmp_path, start_method
    ):
        """Nothing configured: logging's last resort prints what it prints without mptrace."""
        plain = run(tmp_path, "plain", start_method, "nothing")
        traced = run(tmp_path, "traced", start_method, "init-nothing")
        lines = plain.stderr.splitlines()
        for wanted in (b"warning thread", b"error child", b"warning end"):
            assert lines.count(wanted) == 2, wanted  # from "app" and "app.db"
        assert b"ZeroDivisionError: callback of 7" in lines
        assert traced.stderr == plain.stderr
        assert_mptrace_got_everything(traced.events)

    def test_under_mptrace_run_each_line_once_on_the_console(
        self, tmp_path, start_method
    ):
        """Under ``mptrace run`` with the console: the last resort's lines, once each."""
        plain = run(tmp_path, "plain", start_method, "nothing")
        jsonl = tmp_path / "run.jsonl"
        runner = mptrace_run(jsonl, "-e", "console")
        traced = run(tmp_path, "run", start_method, "nothing", *runner)
        for line in plain.stderr.splitlines():
            assert line in traced.stderr.splitlines(), line
        for tag in TAGS:
            for level in (b"warning", b"error"):
                text = level + b" " + tag.encode()
                printed = [x for x in traced.stderr.splitlines() if text in x]
                assert len(printed) == 2, (text, traced.stderr.decode())
        assert traced.stderr.count(b"ZeroDivisionError: callback of 7") == 1
        assert_mptrace_got_everything(read_jsonl(jsonl))


@pytest.mark.parametrize("how", ["basic", "nothing"])
def test_the_program_alone_is_deterministic(tmp_path, how):
    """Two plain runs compare byte for byte, so a difference is mptrace's."""
    first = run(tmp_path, "one", "spawn", how)
    second = run(tmp_path, "two", "spawn", how)
    assert (first.log, first.stderr) == (second.log, second.stderr)


FILE_CONFIG = """\
[loggers]
keys=root
[handlers]
keys=file
[formatters]
keys=plain
[logger_root]
level=DEBUG
handlers=file
[handler_file]
class=FileHandler
formatter=plain
args=({path!r},)
[formatter_plain]
format=%(levelname)s|%(name)s|%(message)s
"""


def _configure(how: str, folder: Path) -> None:
    path = str(folder / "app.log")
    if how == "dictConfig":
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s|%(name)s|%(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": path,
                                  "formatter": "plain"}},
            "root": {"level": "DEBUG", "handlers": ["file"]},
        })  # fmt: skip
    else:
        ini = folder / "logging.ini"
        ini.write_text(FILE_CONFIG.format(path=path))
        logging.config.fileConfig(ini, disable_existing_loggers=False)


def _logged_after(how: str, folder: Path, jsonl: Path | None) -> bytes:
    """The program's file when it configures by *how*, after init() if *jsonl*."""
    folder.mkdir()
    session = mptrace.init(exporters=[f"jsonl:{jsonl}"]) if jsonl else None
    try:
        _configure(how, folder)
        user_logging_lines("t")
        logging.info("module-level")
    finally:
        if session is not None:
            session.shutdown()
        for handler in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return (folder / "app.log").read_bytes()


class TestInProcess:
    @pytest.mark.parametrize("how", ["dictConfig", "fileConfig"])
    def test_config_after_init_is_the_programs(self, tmp_path, how):
        """dictConfig / fileConfig after init(): the same file, mptrace at INFO."""
        logging.getLogger().handlers[:] = []  # pytest's own
        jsonl = tmp_path / "events.jsonl"
        without = _logged_after(how, tmp_path / "without", None)
        with_ = _logged_after(how, tmp_path / "with", jsonl)
        assert b"DEBUG|app|debug t" in without
        assert with_ == without
        got = {(e["logger"], e["event"]) for e in logs_of(read_jsonl(jsonl))}
        assert ("app", "info t") in got and ("root", "module-level") in got
        assert ("app", "debug t") not in got

    def test_a_module_level_call_still_configures_the_root(self, jsonl):
        """logging.warning() with no handler calls basicConfig(), as without mptrace."""
        root = logging.getLogger()
        root.handlers[:] = []
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG"):
            assert root.level == logging.WARNING  # the program's, not mptrace's
            logging.warning("configures")
            assert [type(h) for h in root.handlers] == [logging.StreamHandler]
        assert logs_of(read_jsonl(jsonl), event="configures")

    def test_the_last_resort_gets_what_it_gets_without_mptrace(self, jsonl, capsys):
        """Nothing configured: WARNING and above on stderr, in the last resort's form."""
        logging.getLogger().handlers[:] = []
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG"):
            for level in (logging.DEBUG, logging.INFO, logging.WARNING):
                logging.getLogger("app").log(level, "at %s", level)
        assert capsys.readouterr().err == "at 30\n"
        got = [e["event"] for e in logs_of(read_jsonl(jsonl), logger="app")]
        assert got == ["at 10", "at 20", "at 30"]

    def test_a_record_handed_to_a_logger_reaches_its_handlers(self, jsonl):
        """A listener's logger.handle(record) below the program's level: as without mptrace.

        The logging cookbook's queue and socket listeners hand records made
        elsewhere to ``Logger.handle``, which passes them to the handlers
        whatever the level; mptrace at DEBUG gets them too.
        """
        seen: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger("listener.side")
        logger.addHandler(handler)
        try:
            with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG"):
                assert logging.getLogger().getEffectiveLevel() == logging.WARNING
                record = logging.makeLogRecord(
                    {"name": "listener.side", "levelno": logging.INFO,
                     "levelname": "INFO", "msg": "made elsewhere"}
                )  # fmt: skip
                logger.handle(record)
                logger.info("made here, below the program's level")
        finally:
            logger.removeHandler(handler)
        assert seen == ["made elsewhere"]
        got = [e["event"] for e in logs_of(read_jsonl(jsonl), logger="listener.side")]
        assert got == ["made elsewhere", "made here, below the program's level"]
