"""The report as one self-contained HTML page: inline CSS and JS, nothing fetched.

The page has the process tree, a timeline of processes and pool tasks on one
time axis (SVG; failures in red), the failures with their tracebacks, and the
last records of the run, filterable by process and level with plain JS.
"""

from __future__ import annotations

import html
from typing import Any

from mptrace._cli.report import (
    LEVEL_COLUMNS,
    MAX_RECORDS,
    Proc,
    Report,
    fmt_ms,
    process_rows,
)
from mptrace._cli.report_resources import costly_lines, growing_lines
from mptrace._cli.report_waits import place_lines, waiter_lines
from mptrace._render.lines import format_ts
from mptrace._render.stacks import stacks_lines

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
table{border-collapse:collapse;font-size:13px}
td,th{padding:2px 8px;text-align:left;vertical-align:top}
th{border-bottom:1px solid #ccc}td.n{text-align:right}
#tree ul{list-style:none;padding-left:1.4em;margin:0}#tree>ul{padding-left:0}
.failed,.failed td{color:#c00}.failed .name{font-weight:bold}
.muted{color:#777}
svg text{font:11px system-ui,sans-serif;fill:#333}
svg rect.proc{fill:#9cc3e6}svg rect.task{fill:#3a78b5}
svg rect.proc.failed,svg rect.task.failed{fill:#d22}
#records td:first-child{white-space:nowrap}
#records td{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap}
tr.lv-error td,tr.lv-critical td{color:#c00}tr.lv-warning td{color:#a60}
#filters{margin:.5em 0}#filters label{margin-right:1em}
"""

_JS = """
(function () {
  var select = document.getElementById('process-filter');
  var boxes = document.querySelectorAll('#filters input[type=checkbox]');
  var count = document.getElementById('shown-count');
  function apply() {
    var pid = select.value, levels = {}, shown = 0;
    boxes.forEach(function (b) { levels[b.value] = b.checked; });
    document.querySelectorAll('#records tbody tr').forEach(function (row) {
      var level = row.getAttribute('data-level');
      var ok = (pid === '' || row.getAttribute('data-pid') === pid) &&
               (levels[level] !== false);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown;
  }
  select.addEventListener('change', apply);
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  apply();
})();
"""

_e = html.escape


def _tree(report: Report) -> str:
    items = report.tree_order()
    if not items:
        return "<p class='muted'>No processes.</p>"
    parts, depth = [], -1
    for level, p in items:
        if level > depth:
            parts.append("<ul>" * (level - depth))
        else:
            parts.append("</li>" + "</ul></li>" * (depth - level))
        depth = level
        why = p.failure()
        cls = ' class="failed"' if why else ""
        method = f" ({_e(p.start_method)})" if p.start_method else ""
        note = f": {_e(why)}" if why else f" <span class='muted'>{_e(p.end())}</span>"
        parts.append(f'<li{cls} data-pid="{p.pid}"><span class="name">{_e(p.name)}'
                     f"</span>[{p.pid}]{method}{note}")  # fmt: skip
    parts.append("</li>" + "</ul></li>" * depth + "</ul>")
    return "".join(parts)


def _timeline(report: Report, width: int = 1000) -> str:
    procs = [p for _, p in report.tree_order()]
    t0, t1 = report.first_ns, report.last_ns
    if not procs or t0 is None or t1 is None:
        return "<p class='muted'>No times in the events.</p>"
    for p in procs:
        for t in (p.begin_ns, p.end_ns):
            if t is not None:
                t0, t1 = min(t0, t), max(t1, t)
    label_w, row_h = 220, 22
    scale = (width - label_w - 10) / max(1, t1 - t0)
    rows = {p.pid: i for i, p in enumerate(procs)}
    height = row_h * len(procs) + 24

    def x(t: int) -> float:
        return label_w + (t - t0) * scale

    svg = (f'<svg id="timeline-svg" width="{width}" height="{height}" '
           'xmlns="http://www.w3.org/2000/svg">')  # fmt: skip
    out = [svg]
    for p in procs:
        y = rows[p.pid] * row_h
        begin = p.begin_ns if p.begin_ns is not None else p.first_ns
        end = p.end_ns if p.end_ns is not None else p.last_ns
        cls = "proc failed" if p.failure() else "proc"
        out.append(f'<text x="4" y="{y + 15}">{_e(p.name)}[{p.pid}]</text>')
        if begin is not None and end is not None:
            w = max(2.0, x(end) - x(begin))
            tip = f"{p.name}[{p.pid}] {p.end()} {fmt_ms(end - begin)}"
            out.append(f'<rect class="{cls}" data-pid="{p.pid}" x="{x(begin):.1f}" '
                       f'y="{y + 3}" width="{w:.1f}" height="{row_h - 6}">'
                       f"<title>{_e(tip)}</title></rect>")  # fmt: skip
    for pid, start, end, name, failed in report.bars:
        if pid not in rows:
            continue
        y = rows[pid] * row_h
        cls = "task failed" if failed else "task"
        w = max(1.0, x(end) - x(start))
        out.append(f'<rect class="{cls}" x="{x(start):.1f}" y="{y + 7}" '
                   f'width="{w:.1f}" height="{row_h - 14}"><title>{_e(name)} '
                   f"{fmt_ms(end - start)}</title></rect>")  # fmt: skip
    axis_y = height - 6
    out.append(f'<text x="{label_w}" y="{axis_y}">{_e(format_ts(t0))}</text>')
    out.append(f'<text x="{width - 10}" y="{axis_y}" text-anchor="end">'
               f"+{fmt_ms(t1 - t0)}</text></svg>")  # fmt: skip
    if report.bars_dropped:
        out.append(f"<p class='muted'>{report.bars_dropped} tasks not drawn "
                   f"(the first {len(report.bars)} and every failure are)."
                   "</p>")  # fmt: skip
    return "".join(out)


def _failures(report: Report) -> str:
    failed = report.failed()
    if not failed:
        return "<p>No process failed.</p>"
    out = []
    for p in failed:
        out.append(f'<div class="failed"><h3>{_e(p.name)}[{p.pid}]: '
                   f"{_e(p.failure() or '')}</h3>")  # fmt: skip
        if p.exc and p.exc.get("traceback"):
            out.append(f"<pre>{_e(str(p.exc['traceback']))}</pre>")
        if p.crash:
            out.append(f"<p>Crash stack:</p><pre>{_e(p.crash)}</pre>")
        out.append("</div>")
    return "".join(out)


def _stacks(report: Report) -> str:
    if not report.stacks:
        return "<p>No stacks were taken (<code>mptrace stacks</code> takes them).</p>"
    out = []
    for event in report.stacks.values():
        head, *rest = stacks_lines(event)
        out.append(f"<h3>{_e(head)}</h3><pre>{_e(chr(10).join(rest))}</pre>")
    return "".join(out)


def _table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    columns = [c for c in rows[0] if c != "failed"]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = ' class="failed"' if row["failed"] else ""
        cells = "".join(
            f"<td class='n'>{_e(row[c])}</td>" if c != "process" and c != "end"
            and c != "method" else f"<td>{_e(row[c])}</td>" for c in columns
        )  # fmt: skip
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f"<table id='processes'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def _tasks(report: Report) -> str:
    if not report.tasks:
        return "<p>No pool tasks.</p>"
    rows = "".join(
        f"<tr{' class=failed' if t.failed else ''}><td>{_e(name)}</td>"
        f"<td class=n>{t.count}</td><td class=n>{t.failed}</td>"
        f"<td class=n>{fmt_ms(t.total_ns // max(1, t.count))}</td>"
        f"<td class=n>{fmt_ms(t.max_ns)}</td></tr>"
        for name, t in sorted(report.tasks.items())
    )
    failures = "".join(
        f"<li class=failed>{_e(str(e.get('name')))} on pid {e.get('pid')}: "
        f"{_e(str(e.get('status_message')))}</li>" for e in report.failed_tasks
    )  # fmt: skip
    costly = "".join(f"<li>{_e(line.strip())}</li>"
                     for line in costly_lines(report.resources))  # fmt: skip
    growing = "".join(f"<li class=failed>{_e(line)}</li>"
                      for line in growing_lines(report.resources))  # fmt: skip
    return ("<table><thead><tr><th>task</th><th>count</th><th>failed</th>"
            f"<th>mean</th><th>max</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<ul>{failures}</ul>"
            + (f"<h3>Costliest tasks (CPU)</h3><ol id='costly'>{costly}</ol>"
               if costly else "")
            + (f"<h3>Workers whose memory grows</h3><ul id='growing'>{growing}</ul>"
               if growing else ""))  # fmt: skip


def _waiting(report: Report) -> str:
    if not report.waits.count:
        return "<p>No long waits on locks.</p>"
    names = {pid: p.name for pid, p in report.procs.items()}
    waiters = "".join(f"<li>{_e(line)}</li>"
                      for line in waiter_lines(report.waits, names))  # fmt: skip
    places = "".join(f"<li>{_e(line)}</li>"
                     for line in place_lines(report.waits, names))  # fmt: skip
    return (f"<p>{report.waits.count} waits on locks.</p>"
            f"<h3>Where each process waited</h3><ul id='waiters'>{waiters}</ul>"
            f"<h3>Contended locks</h3><ul id='contended'>{places}</ul>")  # fmt: skip


def _records(report: Report, procs: list[Proc]) -> str:
    options = "".join(
        f'<option value="{p.pid}">{_e(p.name)}[{p.pid}]</option>' for p in procs
    )
    levels = "".join(
        f'<label><input type="checkbox" value="{lv}" checked> {lv}</label>'
        for lv in LEVEL_COLUMNS
    )
    rows = []
    for e in report.records:
        level = str(e.get("level", ""))
        exc = e.get("exc") if isinstance(e.get("exc"), dict) else None
        text = str(e.get("event", ""))
        if exc and exc.get("traceback"):
            text += "\n" + str(exc["traceback"]).rstrip()
        rows.append(f'<tr class="lv-{_e(level)}" data-pid="{e.get("pid")}" '
                    f'data-level="{_e(level)}"><td>{_e(format_ts(e.get("ts")))}</td>'
                    f"<td>{_e(level)}</td><td>{_e(str(e.get('process')))}"
                    f"[{e.get('pid')}]</td><td>{_e(str(e.get('logger', '')))}</td>"
                    f"<td>{_e(text)}</td></tr>")  # fmt: skip
    cap = ""
    if report.records_seen > len(report.records):
        cap = (f"<p class='muted'>Showing the last {len(report.records):,} of "
               f"{report.records_seen:,} records (at most {MAX_RECORDS:,})."
               "</p>")  # fmt: skip
    return (f"{cap}<div id='filters'><label>Process <select id='process-filter'>"
            f"<option value=''>all</option>{options}</select></label>{levels}"
            f"<span class='muted'><span id='shown-count'></span> shown</span></div>"
            "<table id='records'><thead><tr><th>time</th><th>level</th>"
            "<th>process</th><th>logger</th><th>message</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def render_html(report: Report) -> str:
    """The whole page."""
    procs = [p for _, p in report.tree_order()]
    failed = report.failed()
    runs = ", ".join(sorted(str(r) for r in report.runs)) or "(no run id)"
    when = format_ts(report.first_ns) if report.first_ns is not None else "?"
    parts: list[Any] = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mptrace report: run {_e(runs)}</title><style>{_CSS}</style></head>",
        (
            f"<body><h1>mptrace report: run {_e(runs)}</h1><p>{_e(when)}; "
            f"{len(procs)} processes, <span id='failed-count'>{len(failed)}</span> "
            f"failed; {sum(report.kinds.values()):,} events.</p>"
        ),
        f"<h2>Processes</h2><div id='tree'>{_tree(report)}</div>",
        f"<h2>Timeline</h2><div id='timeline'>{_timeline(report)}</div>",
        f"<h2>Failures</h2><div id='failures'>{_failures(report)}</div>",
        f"<h2>Resources</h2>{_table(process_rows(report))}",
        f"<h2>Pool tasks</h2>{_tasks(report)}",
        f"<h2>Waiting</h2><div id='waiting'>{_waiting(report)}</div>",
        f"<h2>Records</h2>{_records(report, procs)}",
        f"<h2>Stacks</h2><div id='stacks'>{_stacks(report)}</div>",
        f"<script>{_JS}</script></body></html>\n",
    ]
    return "".join(parts)


def write_html(report: Report, path: str) -> None:
    """Write the page to *path*."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(report))
