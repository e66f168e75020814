"""The report as text: plain when piped, a rich table on a terminal."""

from __future__ import annotations

import io
from typing import Any, TextIO

from mptrace._cli.reader import Event
from mptrace._cli.report import Proc, Report, fmt_ms, process_rows
from mptrace._cli.report_resources import costly_lines, growing_lines
from mptrace._cli.report_waits import place_lines, waiter_lines
from mptrace._render.lines import format_ts, make_console_renderer
from mptrace._render.stacks import stacks_text

RED = "\x1b[31m"
BOLD = "\x1b[1m"
RESET = "\x1b[0m"
_RIGHT = frozenset(("pid", "duration", "CPU", "peak RSS", "debug", "info", "warning",
                    "error", "critical"))  # fmt: skip


def _plain_table(rows: list[dict[str, str]], out: TextIO) -> None:
    columns = [c for c in rows[0] if c != "failed"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(
            cells[c].rjust(widths[c]) if c in _RIGHT else cells[c].ljust(widths[c])
            for c in columns
        ).rstrip()

    print("  " + line({c: c for c in columns}), file=out)
    for row in rows:
        print("  " + line(row), file=out)


def _rich_table(rows: list[dict[str, str]], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = [c for c in rows[0] if c != "failed"]
    for c in columns:
        table.add_column(c, justify="right" if c in _RIGHT else "left", no_wrap=True)
    for row in rows:
        style = "red" if row["failed"] else None
        cells = [row[c] for c in columns]
        if row["error"] != "0" or row["critical"] != "0":
            cells[columns.index("error")] = f"[red]{row['error']}[/]"
        table.add_row(*cells, style=style)
    console = Console(file=out, force_terminal=True, color_system="standard",
                      width=max(200, len(columns) * 12), highlight=False)  # fmt: skip
    console.print(table)


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in text.rstrip("\n").splitlines())


def _record_line(render: Any, event: Event) -> str:
    """A record on one line: its exception is shown once, above it."""
    brief = {k: v for k, v in event.items() if k not in ("exc", "stack")}
    if isinstance(event.get("exc"), dict):
        brief["exception"] = event["exc"].get("type", "?")
    return str(render(brief)).split("\n", 1)[0]


def _failure(p: Proc, out: TextIO, colours: bool, render: Any) -> None:
    red, reset = (RED, RESET) if colours else ("", "")
    print(f"  {red}{p.name}[{p.pid}] {p.failure()}{reset}", file=out)
    if p.exc and p.exc.get("traceback"):
        print(_indent(str(p.exc["traceback"])), file=out)
    if p.crash:
        print("    crash stack:", file=out)
        print(_indent(p.crash, "      "), file=out)
    if p.last:
        print(f"    last {len(p.last)} record{'s' * (len(p.last) != 1)}:", file=out)
        for event in p.last:
            print("      " + _record_line(render, event), file=out)
    print(file=out)


def _tasks(report: Report, out: TextIO, colours: bool) -> None:
    red, reset = (RED, RESET) if colours else ("", "")
    total = sum(t.count for t in report.tasks.values())
    failed = sum(t.failed for t in report.tasks.values())
    print(f"Pool tasks: {total}, {failed} failed", file=out)
    for name, t in sorted(report.tasks.items()):
        mean = fmt_ms(t.total_ns // max(1, t.count))
        print(f"  {name}: {t.count} tasks, {t.failed} failed, mean {mean}, "
              f"max {fmt_ms(t.max_ns)}", file=out)  # fmt: skip
    for event in report.failed_tasks:
        p = report.procs.get(event.get("pid"))  # type: ignore[arg-type]
        who = f"{p.name}[{p.pid}]" if p else f"pid {event.get('pid')}"
        print(f"  {red}failed: {event.get('name')} on {who}: "
              f"{event.get('status_message')}{reset}", file=out)  # fmt: skip
    if report.slowest:
        print("  slowest:", file=out)
        for ns, _, event in sorted(report.slowest, reverse=True):
            p = report.procs.get(event.get("pid"))  # type: ignore[arg-type]
            who = f"{p.name}[{p.pid}]" if p else "?"
            mark = " (failed)" if event.get("status") == "error" else ""
            print(f"    {fmt_ms(ns):>10}  {event.get('name')} on {who}{mark}", file=out)
    costly = costly_lines(report.resources)
    if costly:
        print("  costliest (CPU of the worker over the task):", file=out)
        for line in costly:
            print(f"    {line}", file=out)
    growing = growing_lines(report.resources)
    if growing:
        print(f"  {red}workers whose memory grows across tasks:{reset}", file=out)
        for line in growing:
            print(f"    {red}{line}{reset}", file=out)


def _waiting(report: Report, out: TextIO, bold: str, reset: str) -> None:
    names = {pid: p.name for pid, p in report.procs.items()}
    print(f"\n{bold}Waiting{reset} ({report.waits.count} waits on locks)", file=out)
    print("  where each process waited:", file=out)
    for line in waiter_lines(report.waits, names):
        print(f"    {line}", file=out)
    print("  contended locks (where the program made them):", file=out)
    for line in place_lines(report.waits, names):
        print(f"    {line}", file=out)


def render_text(report: Report, out: TextIO, colours: bool) -> None:
    """Write the report of *report* to *out*."""
    bold, reset = (BOLD, RESET) if colours else ("", "")
    runs = sorted(str(r) for r in report.runs)
    title = f"run {', '.join(runs)}" if runs else "run (no run id)"
    if report.first_ns is not None and report.last_ns is not None:
        span = fmt_ms(report.last_ns - report.first_ns)
        title += f", {format_ts(report.first_ns)}, {span}"
    failed = report.failed()
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items()))
    print(f"{bold}mptrace report: {title}{reset}", file=out)
    print(f"{sum(report.kinds.values())} events ({kinds or 'none'}); "
          f"{len(report.procs)} processes, {len(failed)} failed", file=out)  # fmt: skip
    rows = process_rows(report)
    if rows:
        print(f"\n{bold}Processes{reset}", file=out)
        (_rich_table if colours else _plain_table)(rows, out)
    if failed:
        print(f"\n{bold}Failed processes{reset}", file=out)
        render = make_console_renderer(colours)
        for p in failed:
            _failure(p, out, colours, render)
    if report.tasks:
        if not failed:  # a failure's block ends with a blank line already
            print(file=out)
        _tasks(report, out, colours)
    if report.waits.count:
        _waiting(report, out, bold, reset)
    if report.stacks:
        print(f"\n{bold}Stacks{reset} (the last taken of each process, most "
              "recent call first)", file=out)  # fmt: skip
        text = stacks_text(list(report.stacks.values()))
        print("\n".join("  " + ln if ln else "" for ln in text.split("\n")), file=out)


def report_text(report: Report, colours: bool) -> str:
    """The report as one string."""
    out = io.StringIO()
    render_text(report, out, colours)
    return out.getvalue().rstrip("\n")
