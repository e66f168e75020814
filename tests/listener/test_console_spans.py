"""The console's lines for spans and lifecycle transitions, and the process table.

Each is a pure function of event dicts: the renderers and ``format_summary``
are called directly, and ``ConsoleSink`` writes to a ``StringIO``, which is
not a terminal, so no colour escape may appear there.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from mptrace._listener.console_sink import ConsoleSink
from mptrace._render.lines import (
    LEVEL_STYLES,
    RESET,
    LifecycleRenderer,
    format_duration,
    format_summary,
    make_span_renderer,
    process_colour,
)

T0 = 1_700_000_000_000_000_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(?P<level>\w+)\s*\] "
    r"(?P<process>\S+)\[(?P<pid>\d+)\] (?P<text>.*)$"
)


def parse(line: str) -> dict[str, str]:
    """The level, process, pid and text of one rendered line."""
    match = LINE.match(line)
    assert match, f"not a console line: {line!r}"
    return match.groupdict()


def span(**fields: Any) -> dict[str, Any]:
    """A finished span event from worker-1[123] that took 12.3 ms."""
    event = {
        "kind": "span",
        "name": "task mymod.work",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "parent_span_id": None,
        "start_ns": T0,
        "end_ns": T0 + 12_300_000,
        "status": "unset",
        "status_message": None,
        "process": "worker-1",
        "pid": 123,
    }
    event.update(fields)
    return event


def lifecycle(
    transition: str, target_pid: int | None = 123, **fields: Any
) -> dict[str, Any]:
    """A lifecycle event about worker-1, seen by MainProcess[100]."""
    return {
        "kind": "lifecycle",
        "ts": T0,
        "transition": transition,
        "target_pid": target_pid,
        "target_name": "worker-1",
        "start_method": "spawn",
        "process": "MainProcess",
        "pid": 100,
        **fields,
    }


def render_lifecycle(*events: dict[str, Any]) -> list[dict[str, str]]:
    """Each event through one renderer, in order, parsed."""
    render = LifecycleRenderer(colours=False)
    return [parse(render(e).split("\n")[0]) for e in events]


class TestSpanLines:
    """A finished span is one line: process, 'span', name, duration, status."""

    def test_an_ok_span(self) -> None:
        """worker-1[123] span task mymod.work 12.3 ms ok, at info, at the span's end time."""
        line = make_span_renderer(colours=False)(span())
        assert "\n" not in line
        assert parse(line) == {
            "level": "info",
            "process": "worker-1",
            "pid": "123",
            "text": "span task mymod.work 12.3 ms ok",
        }

    def test_a_failed_span_says_why(self) -> None:
        """Status error: level error, and the status message after the duration."""
        line = make_span_renderer(colours=False)(
            span(status="error", status_message="ValueError: boom")
        )
        assert parse(line)["level"] == "error"
        assert (
            parse(line)["text"]
            == "span task mymod.work 12.3 ms error: ValueError: boom"
        )

    def test_an_error_without_a_message(self) -> None:
        """Status error with no message still reads as an error."""
        line = make_span_renderer(colours=False)(span(status="error"))
        assert parse(line)["text"] == "span task mymod.work 12.3 ms error"

    @pytest.mark.parametrize(
        ("start", "end", "shown"),
        [
            (0, 0, "0.0 ms"),
            (0, 999_940_000, "999.9 ms"),
            (0, 2_345_000_000, "2.35 s"),
            (None, 5, "?"),
        ],
    )
    def test_durations(self, start: int | None, end: int, shown: str) -> None:
        """Milliseconds below a second, seconds above, '?' when a time is missing."""
        assert format_duration(start, end) == shown

    def test_a_span_that_could_not_be_converted(self) -> None:
        """A span the sender could not convert is a warning line saying so, not a crash."""
        event = {
            "kind": "span",
            "name": "odd",
            "mptrace_error": "span could not be converted: X",
            "process": "w",
            "pid": 9,
        }
        parsed = parse(make_span_renderer(colours=False)(event))
        assert parsed["level"] == "warning"
        assert parsed["text"] == "span odd not recorded: span could not be converted: X"

    def test_colours_on_a_terminal(self) -> None:
        """With colours, the process tag wears its colour; without, no escape at all."""
        coloured = make_span_renderer(colours=True)(span())
        assert f"{process_colour(123)}worker-1[123]{RESET}" in coloured
        assert not ANSI.search(make_span_renderer(colours=False)(span()))


class TestLifecycleLines:
    """One line per transition; deaths that were not asked for are errors."""

    def test_a_clean_exit_is_info(self) -> None:
        """MainProcess[100] lifecycle worker-1[123] exited code 0."""
        [parsed] = render_lifecycle(lifecycle("exited", exitcode=0, signal=None))
        assert parsed == {
            "level": "info",
            "process": "MainProcess",
            "pid": "100",
            "text": "lifecycle worker-1[123] exited code 0",
        }

    def test_a_non_zero_exit_code_is_an_error(self) -> None:
        """exit code 3: level error."""
        [parsed] = render_lifecycle(lifecycle("exited", exitcode=3, signal=None))
        assert (parsed["level"], parsed["text"]) == (
            "error",
            "lifecycle worker-1[123] exited code 3",
        )

    def test_a_sigkill_nobody_asked_for_is_an_error(self) -> None:
        """Killed by SIGKILL (the OOM killer, say): level error, 'exited by SIGKILL'."""
        [parsed] = render_lifecycle(lifecycle("exited", exitcode=-9, signal="SIGKILL"))
        assert (parsed["level"], parsed["text"]) == (
            "error",
            "lifecycle worker-1[123] exited by SIGKILL",
        )

    def test_the_signal_is_named_from_the_exit_code_when_missing(self) -> None:
        """exitcode -11 with no signal name reads as SIGSEGV."""
        [parsed] = render_lifecycle(lifecycle("exited", exitcode=-11))
        assert parsed["text"] == "lifecycle worker-1[123] exited by SIGSEGV"

    def test_sigterm_after_terminate_is_info(self) -> None:
        """terminate() then death by SIGTERM: as asked, so info, and said as 'terminated by'."""
        terminated, exited = render_lifecycle(
            lifecycle("terminated", how="terminate"),
            lifecycle("exited", exitcode=-15, signal="SIGTERM"),
        )
        assert (terminated["level"], terminated["text"]) == (
            "info",
            "lifecycle worker-1[123] terminated by terminate()",
        )
        assert (exited["level"], exited["text"]) == (
            "info",
            "lifecycle worker-1[123] exited by SIGTERM",
        )

    @pytest.mark.parametrize(
        ("how", "signal"),
        [("kill", "SIGKILL"), ("terminate", "SIGKILL"), ("kill", "SIGTERM")],
    )
    def test_any_stop_signal_after_a_stop_request_is_info(
        self, how: str, signal: str
    ) -> None:
        """kill() then SIGKILL, or terminate() escalated to SIGKILL: as asked, so info."""
        _, exited = render_lifecycle(
            lifecycle("terminated", how=how),
            lifecycle("exited", exitcode=-9, signal=signal),
        )
        assert exited["level"] == "info"

    def test_a_crash_after_terminate_is_still_an_error(self) -> None:
        """terminate() does not excuse a SIGSEGV."""
        _, exited = render_lifecycle(
            lifecycle("terminated", how="terminate"),
            lifecycle("exited", exitcode=-11, signal="SIGSEGV"),
        )
        assert exited["level"] == "error"

    def test_an_unknown_exit_code_is_a_warning(self) -> None:
        """The parent could not learn the exit code: said so, at warning."""
        [parsed] = render_lifecycle(lifecycle("exited", exitcode=None, signal=None))
        assert (parsed["level"], parsed["text"]) == (
            "warning",
            "lifecycle worker-1[123] exited, exit code unknown",
        )

    def test_sigterm_without_terminate_is_an_error(self) -> None:
        """SIGTERM from elsewhere, or for another child's terminate(), is an error."""
        parsed = render_lifecycle(
            lifecycle("terminated", target_pid=999, how="terminate"),
            lifecycle("exited", exitcode=-15, signal="SIGTERM"),
        )
        assert parsed[1]["level"] == "error"

    def test_a_request_covers_one_exit_only(self) -> None:
        """A pid reused later is not still 'asked to terminate'."""
        parsed = render_lifecycle(
            lifecycle("terminated", how="terminate"),
            lifecycle("exited", exitcode=-15, signal="SIGTERM"),
            lifecycle("exited", exitcode=-15, signal="SIGTERM"),
        )
        assert [p["level"] for p in parsed[1:]] == ["info", "error"]

    def test_the_other_transitions(self) -> None:
        """created (no pid yet), started, running, finished returned / raised.

        A child that raised is a warning here: its traceback is an error log already.
        """
        parsed = render_lifecycle(
            lifecycle("created", target_pid=None),
            lifecycle("started"),
            lifecycle("running"),
            lifecycle("finished", outcome="returned", exitcode=0),
            lifecycle(
                "finished",
                outcome="raised",
                exc={
                    "type": "ValueError",
                    "message": "boom",
                    "traceback": "Traceback ...\n",
                },
            ),
        )
        assert [(p["level"], p["text"]) for p in parsed] == [
            ("info", "lifecycle worker-1 created (spawn)"),
            ("info", "lifecycle worker-1[123] started (spawn)"),
            ("info", "lifecycle worker-1[123] running"),
            ("info", "lifecycle worker-1[123] finished returned"),
            ("warning", "lifecycle worker-1[123] finished raised ValueError: boom"),
        ]

    def test_a_crash_is_one_line(self) -> None:
        """exited by SIGSEGV with a crash report: one line; the parent logs the stack."""
        crash = "Fatal Python error: Segmentation fault\n\nCurrent thread 0x1:\n"
        render = LifecycleRenderer(colours=False)
        line = render(lifecycle("exited", exitcode=-11, signal="SIGSEGV", crash=crash))
        assert parse(line) == {
            "level": "error",
            "process": "MainProcess",
            "pid": "100",
            "text": "lifecycle worker-1[123] exited by SIGSEGV",
        }


ROWS = [
    {
        "pid": 100,
        "name": "MainProcess",
        "exit": "running",
        "duration_s": 12.345,
        "cpu_s": 1.2,
        "peak_rss_bytes": 45 * 1048576,
        "errors": 0,
    },
    {
        "pid": 123,
        "name": "worker-1",
        "exit": "SIGKILL",
        "duration_s": 3.0,
        "cpu_s": 0.5,
        "peak_rss_bytes": 1536 * 1024,
        "errors": 2,
    },
    {
        "pid": 124,
        "name": "worker-2",
        "exit": 0,
        "duration_s": None,
        "cpu_s": None,
        "peak_rss_bytes": None,
        "errors": None,
    },
]


class TestSummaryTable:
    """At shutdown: one row per process, columns aligned, '-' for what is unknown."""

    def test_the_table(self) -> None:
        """Header and rows, numbers right-aligned, seconds to 2 places, RSS in MiB."""
        assert format_summary(ROWS, colours=False).split("\n") == [
            "mptrace: processes",
            "  pid  name         exit     duration (s)  CPU (s)  peak RSS (MiB)  errors",
            "  100  MainProcess  running         12.35     1.20            45.0       0",
            "  123  worker-1     SIGKILL          3.00     0.50             1.5       2",
            "  124  worker-2     0                   -        -               -       -",
        ]

    def test_missing_keys_show_as_dashes(self) -> None:
        """A row with only a pid still makes a full row."""
        lines = format_summary([{"pid": 7}], colours=False).split("\n")
        assert lines[-1].split() == ["7", "-", "-", "-", "-", "-", "-"]

    def test_colours_mark_failures(self) -> None:
        """With colours: names in their process colour, a signal exit and errors in red."""
        text = format_summary(ROWS, colours=True)
        red = LEVEL_STYLES["error"]
        assert f"{process_colour(123)}worker-1" in text
        assert f"{red}SIGKILL" in text and re.search(
            re.escape(red) + r"\s*2" + re.escape(RESET), text
        )
        assert f"{red}running" not in text and f"{red}0 " not in text
        assert ANSI.sub("", text) == format_summary(ROWS, colours=False)


class TestConsoleSink:
    """The exporter itself: the right renderer per kind, plain text off a terminal."""

    def test_spans_lifecycle_and_summary_reach_the_stream(self) -> None:
        """With spans and lifecycle asked for, a span, a lifecycle event and the
        summary are written; no escape off a tty."""
        stream = io.StringIO()
        exporter = ConsoleSink(stream, lifecycle=True, spans=True)
        exporter.export(
            [
                lifecycle("exited", exitcode=0, ts=T0 + 20_000_000),
                span(),  # ended before the exit: printed first, in ts order
                {"kind": "something-new", "pid": 1},
            ]
        )
        exporter.summary(ROWS)
        exporter.shutdown()
        text = stream.getvalue()
        assert not ANSI.search(text)
        lines = text.split("\n")
        assert parse(lines[0])["text"] == "span task mymod.work 12.3 ms ok"
        assert parse(lines[1])["text"] == "lifecycle worker-1[123] exited code 0"
        assert lines[2:] == format_summary(ROWS, colours=False).split("\n") + [""]

    def test_no_rows_no_table(self) -> None:
        """summary([]) prints nothing."""
        stream = io.StringIO()
        ConsoleSink(stream).summary([])
        assert stream.getvalue() == ""

    def test_a_nameless_logger_shows_no_empty_column(self) -> None:
        """A log event with logger "" renders its message right after the process tag."""
        stream = io.StringIO()
        sink = ConsoleSink(stream)
        sink.export(
            [
                {
                    "kind": "log",
                    "ts": T0,
                    "level": "info",
                    "logger": "",
                    "event": "hello",
                    "process": "w",
                    "pid": 5,
                }
            ]
        )
        sink.shutdown()  # everything held goes out; its thread ends
        assert parse(stream.getvalue().rstrip("\n"))["text"].rstrip() == "hello"
