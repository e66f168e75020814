"""Living beside the program's own logging and structlog, as a guest.

The program's handlers and renderers must see exactly what they see without
mptrace; mptrace must keep receiving records when the program reconfigures
logging or structlog after ``init()``; nothing the program configures may
crash it through mptrace; and no line is printed twice on the terminal.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import structlog
from conftest import logs_of, read_jsonl
from workers import structlog_configure_then_log, user_logging_lines

import mptrace

FORMAT = "%(levelname)s %(name)s %(message)s"


def _user_file(tmp_path: Path, level: str, with_mptrace: bool, name: str) -> bytes:
    """The program's own log file after one run of user_logging_lines."""
    path = tmp_path / f"{name}.log"
    logging.basicConfig(filename=path, level=level, format=FORMAT, force=True)
    try:
        if with_mptrace:
            jsonl = tmp_path / f"{name}.jsonl"
            with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
                user_logging_lines("t")
        else:
            user_logging_lines("t")
    finally:
        for h in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(h)
            h.close()
    return path.read_bytes()


class TestStdlibUntouched:
    @pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
    def test_the_programs_file_is_byte_identical(self, tmp_path, level):
        """With mptrace at INFO, the program's own file at DEBUG/INFO/WARNING is unchanged."""
        without = _user_file(tmp_path, level, False, "without")
        with_ = _user_file(tmp_path, level, True, "with")
        assert with_ == without
        assert without  # the scenario writes something at every level

    @pytest.mark.parametrize("level", ["DEBUG", "WARNING"])
    def test_mptraces_level_applies_to_mptrace_alone(self, tmp_path, level):
        """mptrace at INFO gets info and above, whatever the program's root level."""
        _user_file(tmp_path, level, True, "run")
        events = logs_of(read_jsonl(tmp_path / "run.jsonl"))
        levels = sorted({e["level"] for e in events if e["logger"].startswith("app")})
        assert levels == ["error", "info", "warning"]

    def test_root_level_and_handle_come_back(self, jsonl):
        """After shutdown the root level and Logger.handle are the program's again."""
        root = logging.getLogger()
        root.setLevel(logging.ERROR)
        handle = logging.Logger.handle
        factory = logging.getLogRecordFactory()
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG"):
            pass
        assert root.level == logging.ERROR
        assert logging.Logger.handle is handle
        assert logging.getLogRecordFactory() is factory

    def test_basicconfig_force_after_init_keeps_mptrace(self, jsonl, tmp_path):
        """basicConfig(force=True) after init() no longer detaches mptrace."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
            logging.basicConfig(
                filename=tmp_path / "user.log", level="INFO", format=FORMAT, force=True
            )
            logging.getLogger("app").info("after basicConfig")
        assert len(logs_of(read_jsonl(jsonl), event="after basicConfig")) == 1
        assert b"after basicConfig" in (tmp_path / "user.log").read_bytes()

    def test_dictconfig_after_init_keeps_mptrace(self, jsonl, tmp_path):
        """dictConfig after init() keeps mptrace attached."""
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"f": {"class": "logging.FileHandler",
                               "filename": str(tmp_path / "user.log")}},
            "root": {"level": "INFO", "handlers": ["f"]},
        }  # fmt: skip
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
            logging.config.dictConfig(config)
            logging.getLogger("app").info("after dictConfig")
        assert len(logs_of(read_jsonl(jsonl), event="after dictConfig")) == 1
        assert b"after dictConfig" in (tmp_path / "user.log").read_bytes()


CONSOLE_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import mptrace
    from workers import print_and_log

    if __name__ == "__main__":
        logging.basicConfig(format="%(message)s")
        with mptrace.init(exporters=["console"], level="INFO"):
            print_and_log("parent")
            p = mptrace.get_context(sys.argv[1]).Process(
                target=print_and_log, args=("child",))
            p.start()
            p.join(60)
    """
)


class TestNoLineTwice:
    def test_a_program_that_logs_to_stderr_prints_each_line_once(
        self, tmp_path, start_method
    ):
        """basicConfig() to stderr plus the console exporter: each line once."""
        script = tmp_path / "prog.py"
        script.write_text(CONSOLE_SCRIPT)
        tests = str(Path(__file__).parents[1])
        done = subprocess.run(
            [sys.executable, str(script), start_method],
            capture_output=True, text=True, timeout=120,
            env={**_env(), "PYTHONPATH": tests},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("line from parent") == 1, done.stderr
        assert done.stderr.count("line from child") == 1, done.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


class TestStructlogUntouched:
    def _configure(self, out: io.StringIO, cache: bool = False) -> None:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                _mark,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            logger_factory=structlog.WriteLoggerFactory(file=out),
            cache_logger_on_first_use=cache,
        )

    def test_the_programs_output_is_unchanged(self, jsonl):
        """The program's processors and renderer run as before, DEBUG included."""
        outputs = []
        for with_mptrace in (False, True):
            out = io.StringIO()
            self._configure(out)
            log = structlog.get_logger()
            if with_mptrace:
                with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG"):
                    log.debug("dbg", n=1)
                    log.info("inf", n=2)
            else:
                log.debug("dbg", n=1)
                log.info("inf", n=2)
            outputs.append(out.getvalue())
        assert outputs[0] == outputs[1]
        assert '"event": "dbg"' in outputs[0]

    def test_mptrace_gets_the_dict_after_the_programs_processors(self, jsonl):
        """mptrace's event has what the program's processors added, not the rendered string."""
        self._configure(io.StringIO())
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="DEBUG"):
            structlog.get_logger().info("hello", n=3)
        (event,) = logs_of(read_jsonl(jsonl), event="hello")
        assert event["marked"] is True and event["n"] == 3
        assert event["level"] == "info"

    def test_a_logger_cached_before_init_keeps_flowing(self, jsonl):
        """A logger cached on first use before init() reaches mptrace after it."""
        self._configure(io.StringIO(), cache=True)
        log = structlog.get_logger()
        log.info("before init")
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
            log.info("cached logger")
        assert len(logs_of(read_jsonl(jsonl), event="cached logger")) == 1

    def test_configure_after_init_keeps_events_flowing(
        self, jsonl, tmp_path, start_method
    ):
        """structlog.configure() after init(), in the parent and a child: no crash, events arrive."""
        out = tmp_path / "user.out"
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO"):
            structlog_configure_then_log("parent", str(out))
            p = mptrace.get_context(start_method).Process(
                target=structlog_configure_then_log, args=("child", str(out))
            )
            p.start()
            p.join(60)
        assert p.exitcode == 0
        events = read_jsonl(jsonl)
        for tag in ("parent", "child"):
            (e,) = logs_of(events, event="configured after init", tag=tag)
            assert e["marked_by_program"] is True
            assert len(logs_of(events, event="renderer only", tag=tag)) == 1
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        configured = [x for x in lines if x["event"] == "configured after init"]
        assert sorted(x["tag"] for x in configured) == ["child", "parent"]

    def test_structlog_comes_back_after_shutdown(self, jsonl):
        """After shutdown the program's processors are as they were."""
        out = io.StringIO()
        self._configure(out)
        before = list(structlog.get_config()["processors"])
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            pass
        assert structlog.get_config()["processors"] == before


def _mark(logger, method_name, event_dict):
    event_dict["marked"] = True
    return event_dict
