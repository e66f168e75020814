"""The ``mptrace`` command: runs a program in a session; reads the files it wrote.

``mptrace logs`` prints records as the console exporter does (or as JSON
lines) with filters, and can follow a file like ``tail -F``;
``mptrace report`` gives a run at a glance and exits 1 when a process failed;
``mptrace timeline`` writes a trace-event file for Perfetto or
``chrome://tracing``; ``mptrace stacks`` prints the stacks of every
process of a run that is going; ``mptrace run`` runs an unmodified program inside a
session (``_session.run``). A new subcommand is one more ``@main.command()``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import IO

import click

from mptrace._cli.reader import Event, Problems, Reader, order_files
from mptrace._cli.selection import KINDS, LEVELS, Selection, When, resolve_run
from mptrace._cli.stacks import ask, find_session
from mptrace._render.palette import Palette
from mptrace._render.stacks import stacks_text
from mptrace._render.term import use_colours
from mptrace._schema.encoding import to_json
from mptrace.exceptions import ConfigurationError


def make_renderer(colours: bool) -> Callable[[Event, str, str], str]:
    """Render one event as the console does, given its level and message."""
    from mptrace._render.lines import make_console_renderer, make_span_renderer

    palette = Palette()  # colours by order of appearance, as on the console
    render_log = make_console_renderer(colours, palette)
    render_span = make_span_renderer(colours, palette)

    def render(event: Event, level: str, message: str) -> str:
        kind = event.get("kind")
        if kind == "span":
            return render_span(event)
        if kind == "lifecycle":
            if not message:
                return render_log(event)
            view = {
                "ts": event.get("ts"), "level": level, "event": message,
                "process": event.get("process", "?"), "pid": event.get("pid", "?"),
            }  # fmt: skip
            return render_log(view)
        return render_log(event)

    return render


# -- the commands --------------------------------------------------------------

FILES = click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, readable=True)
)
RUN = click.option(
    "--run",
    metavar="ID|last|all",
    help="Only the run with this id; 'last' is the run of the last line that "
    "names one (a file with no run ids is one run).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mptrace", prog_name="mptrace")
def main() -> None:
    """Run a program in a session; read the JSON-lines files it wrote.

    `mptrace run` runs an unmodified program with every process it starts
    taking part. The other commands read what the jsonl:PATH exporter wrote:
    FILE may be a rotated file or a gzip file; several files are read oldest
    first.
    """


@main.command()
@FILES
@click.option(
    "--process",
    "processes",
    multiple=True,
    metavar="NAME",
    help="Only this process (repeatable; with --pid, either matches).",
)
@click.option(
    "--pid",
    "pids",
    multiple=True,
    type=int,
    metavar="N",
    help="Only this pid (repeatable).",
)
@click.option(
    "--level",
    type=click.Choice(list(LEVELS), case_sensitive=False),
    help="Only this level and above.",
)
@click.option(
    "--logger",
    "loggers",
    multiple=True,
    metavar="NAME",
    help="Only this logger and its children (a.b matches a.b.c, not a.bc).",
)
@click.option(
    "--trace", "traces", multiple=True, metavar="ID", help="Only this trace id."
)
@click.option("--span", "spans", multiple=True, metavar="ID", help="Only this span id.")
@click.option("--grep", metavar="REGEX", help="Only messages this regex finds.")
@click.option("--since", type=When(), help="From this time (ISO, or a time ago: 10m).")
@click.option("--until", type=When(), help="Up to this time.")
@RUN
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice([*KINDS, "all"]),
    default=("log",),
    show_default=True,
    help="Which events: log records, finished spans, process lifecycle.",
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep reading the last file as it grows and after rotation.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the matching lines as they are, one JSON object a line.",
)
def logs(
    files: tuple[str, ...], processes: tuple[str, ...], pids: tuple[int, ...],
    level: str | None, loggers: tuple[str, ...], traces: tuple[str, ...],
    spans: tuple[str, ...], grep: str | None, since: int | None, until: int | None,
    run: str | None, kinds: tuple[str, ...], follow: bool, as_json: bool,
) -> None:  # fmt: skip
    """Print the records of FILE..., as the console showed them, filtered."""
    try:
        pattern = re.compile(grep) if grep is not None else None
    except re.error as exc:
        raise click.BadParameter(
            f"not a regular expression ({exc}).", param_hint="--grep"
        ) from None
    paths = order_files(files)
    chosen = frozenset(KINDS) if "all" in kinds else frozenset(kinds)
    selection = Selection(
        chosen, processes, pids, level.lower() if level else None, loggers, traces,
        spans, pattern, since, until, resolve_run(run, paths),
    )  # fmt: skip
    problems = Problems()
    reader = Reader(paths, problems, selection.prefilter(), follow=follow)
    out: IO[bytes] = sys.stdout.buffer
    reader.on_idle = out.flush
    try:
        if as_json:
            for raw, event in reader:
                if selection.matches(event)[0]:
                    out.write(raw if raw.endswith(b"\n") else raw + b"\n")
        else:
            render = make_renderer(use_colours(sys.stdout))
            for _, event in reader:
                ok, lvl, message = selection.matches(event)
                if ok:
                    out.write(render(event, lvl, message).encode("utf-8", "replace"))
                    out.write(b"\n")
        out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        problems.finish()


@main.command()
@FILES
@RUN
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the report as one self-contained HTML page.",
)
@click.option(
    "--last",
    "last_records",
    default=5,
    show_default=True,
    metavar="N",
    type=click.IntRange(0, 1000),
    help="Records shown before each failure.",
)
def report(files: tuple[str, ...], run: str | None, html: str | None,
           last_records: int) -> None:  # fmt: skip
    """A run at a glance: processes, failures, pool tasks. Exits 1 if one failed.

    Without --run, the last run of the files.
    """
    from mptrace._cli.report import Report
    from mptrace._cli.report_text import report_text

    paths = order_files(files)
    selected = resolve_run(run or "last", paths)
    problems = Problems()
    summary = Report(keep_last=last_records)
    for _, event in Reader(paths, problems):
        if selected is None or event.get("run") == selected[0]:
            summary.add(event)
    problems.finish()
    click.echo(report_text(summary, use_colours(sys.stdout)), color=True)
    if html:
        from mptrace._cli.report_html import write_html

        write_html(summary, html)
        click.echo(f"mptrace: report written to {html}", err=True)
    sys.exit(1 if summary.failed() else 0)


@main.command()
@FILES
@RUN
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the trace-event JSON ('-' for stdout).",
)
def timeline(files: tuple[str, ...], run: str | None, output: str) -> None:
    """Write FILE... as trace-event JSON, for ui.perfetto.dev or chrome://tracing.

    A track per process; spans as slices, records and exits as instants.
    Without --run, the last run of the files.
    """
    from mptrace._cli.timeline import Timeline

    paths = order_files(files)
    selected = resolve_run(run or "last", paths)
    problems = Problems()
    with click.open_file(output, "w", encoding="utf-8") as out:
        trace = Timeline(out)  # type: ignore[arg-type] # a text file
        for _, event in Reader(paths, problems):
            if selected is None or event.get("run") == selected[0]:
                trace.add(event)
        trace.finish()
    problems.finish()
    if output != "-":
        click.echo(f"mptrace: {trace.count} trace events written to {output}", err=True)


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.option(
    "-m",
    "module",
    is_flag=True,
    help="Run PROGRAM as a module, as python -m does.",
)
@click.option(
    "-e",
    "--exporter",
    "exporters",
    multiple=True,
    metavar="SPEC",
    help="Where events go (repeatable): console, jsonl:PATH, otlp, otlp+http, "
    "memory or package.module:Class. Default: $MPTRACE_EXPORTERS, else console.",
)
@click.option(
    "--level",
    metavar="LEVEL",
    help="The lowest level funnelled. Default: $MPTRACE_LEVEL, else INFO.",
)
@click.option(
    "--service-name",
    metavar="NAME",
    help="The name in traces. Default: $OTEL_SERVICE_NAME, else the program's.",
)
@click.option(
    "--no-instrument",
    is_flag=True,
    help="Only mptrace's drop-ins take part, not plain multiprocessing.",
)
@click.argument("program", metavar="PROGRAM")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(
    module: bool, exporters: tuple[str, ...], level: str | None,
    service_name: str | None, no_instrument: bool, program: str,
    args: tuple[str, ...],
) -> None:  # fmt: skip
    """Run PROGRAM (a script, or a module with -m) with ARGS inside a session.

    Every process it starts with multiprocessing or concurrent.futures takes
    part; the exit status is the program's own.
    """
    from mptrace._session.run import run_program

    if not module and not os.path.isfile(program):
        raise click.BadParameter(f"no such file: {program!r}.", param_hint="PROGRAM")
    try:
        run_program(
            program, args, module, exporters=exporters or None, level=level,
            service_name=service_name, instrument=False if no_instrument else None,
        )  # fmt: skip
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.argument("target", required=False, metavar="[FOLDER|PID]")
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds to wait for the run's answer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON lines.")
@click.option(
    "--all-frames",
    is_flag=True,
    help="Show mptrace's own frames and threads too (left out by default).",
)
def stacks(target: str | None, timeout: float, as_json: bool, all_frames: bool) -> None:
    """Print the Python stacks of every thread of every process of a going run.

    TARGET is the run's session folder (mptrace-PID-XXXX in the temporary
    folder) or its owner's pid; without it, the one run of yours that is
    going. The stacks also go to the run's exporters as "stacks" events.
    """
    try:
        events = ask(find_session(target), timeout)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    if not events:
        raise click.ClickException(
            "No process of this run answered: none has armed the stacks signal "
            "(the program handles that signal itself, or none has joined yet)."
        )
    if as_json:
        for event in events:
            click.echo(to_json(event).decode("utf-8"))
    else:
        click.echo(stacks_text(events, all_frames))
