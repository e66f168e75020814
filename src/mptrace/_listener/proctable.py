"""The listener's table of every child process of the session.

Lifecycle records fill it from two sides: the parent says created, started,
terminated and exited; the child says running and finished (with its own
``getrusage`` and, when it raised, the exception). The table completes each
process span with what the child said before the span is exported, and gives
the console its summary at shutdown.
"""

from __future__ import annotations

from typing import Any

from mptrace._schema.events import ERROR_RANK, exception_attributes

#: Finished processes kept, each as one summary row, for the end-of-run table;
#: past it, finished processes are only counted (by how they ended). With it
#: the table's memory is bounded however many processes a session starts.
ROWS_KEPT = 1000


class ProcessTable:
    """Rows by pid while a process lives; a pid the system gives again (after
    the first holder was reaped) starts a new row, so one process is never
    shown with another's end. A row retires to one small summary once the
    process has exited and its span is complete."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.retired: list[dict[str, Any]] = []
        self.more: dict[str, Any] = {"count": 0, "exits": {}, "errors": 0}

    def _row(self, pid: int) -> dict[str, Any]:
        row = self.rows.get(pid)
        if row is None:
            row = self.rows[pid] = {"pid": pid, "errors": 0}
        return row

    def on_lifecycle(self, event: dict[str, Any]) -> None:
        pid = event.get("target_pid")
        if type(pid) is not int:
            return
        transition = event.get("transition")
        old = self.rows.get(pid)
        if old is not None and transition == "started" and "started" in old:
            self._retire(pid)  # the pid was reused: a new process
        row = self._row(pid)
        row["name"] = event.get("target_name") or row.get("name")
        row[str(transition)] = event
        if transition == "exited" and row.get("span_done"):
            self._retire(pid)

    def on_log(self, pid: object, rank: int) -> None:
        """Count a log record of *pid* by the level rank its frame carries."""
        if rank >= ERROR_RANK and type(pid) is int:
            self._row(pid)["errors"] += 1

    def has_finished(self, pid: int) -> bool:
        """True when the child's own last word (``finished``) is in."""
        row = self.rows.get(pid)
        return row is not None and "finished" in row

    def _retire(self, pid: int) -> None:
        row = self.rows.pop(pid, None)
        summary = _summary_row(pid, row) if row is not None else None
        if summary is None:
            return
        if len(self.retired) < ROWS_KEPT:
            self.retired.append(summary)
            return
        more = self.more
        more["count"] += 1
        more["exits"][summary["exit"]] = more["exits"].get(summary["exit"], 0) + 1
        more["errors"] += summary["errors"]

    def complete_span(
        self, span: dict[str, Any], row: dict[str, Any] | None = None
    ) -> None:
        """Add the child's own account to its process span (in place), from
        *row* (the row when the span came) or the pid's row now."""
        attributes = span.get("attributes") or {}
        pid = attributes.get("process.pid")
        if row is None:
            row = self.rows.get(pid) if type(pid) is int else None
        if row is None:
            return
        events = list(span.get("events") or [])
        running = row.get("running")
        if running:
            events.append({"name": "running", "ts": running["ts"], "attributes": {}})
        finished = row.get("finished")
        if finished:
            events.append(
                {
                    "name": "finished",
                    "ts": finished["ts"],
                    "attributes": {"mptrace.outcome": finished.get("outcome", "")},
                }
            )
            exc = finished.get("exc")
            if isinstance(exc, dict):
                events.append(
                    {
                        "name": "exception",
                        "ts": finished["ts"],
                        "attributes": exception_attributes(exc),
                    }
                )
                if span.get("status") != "error":
                    span["status"] = "error"
                    span["status_message"] = f"{exc.get('type')}: {exc.get('message')}"
            for key in ("cpu_user_s", "cpu_system_s"):
                if finished.get(key) is not None:
                    attributes[f"mptrace.process.cpu.{key[4:-2]}"] = finished[key]
            peak = finished.get("peak_rss_bytes")
            if isinstance(peak, int):
                attributes["mptrace.process.memory.peak_rss"] = max(
                    peak, attributes.get("mptrace.process.memory.peak_rss") or 0
                )
        events.sort(key=lambda e: e.get("ts") or 0)
        span["events"] = events
        span["attributes"] = attributes
        row["span_done"] = True
        if "exited" in row and self.rows.get(pid) is row:  # type: ignore[arg-type]
            self._retire(pid)  # type: ignore[arg-type]

    def summary(self) -> list[dict[str, Any]]:
        """One row per child: pid, name, exit, duration_s, cpu_s, peak_rss_bytes,
        errors; past ROWS_KEPT finished children, one row that counts the rest."""
        rows = list(self.retired)
        for pid, row in self.rows.items():
            summary = _summary_row(pid, row)
            if summary is not None:
                rows.append(summary)
        rows.sort(key=lambda r: r["pid"])
        more = self.more
        if more["count"]:
            exits = ", ".join(
                f"{code} ×{n}" for code, n in sorted(more["exits"].items())
            )
            rows.append(
                {
                    "pid": None,
                    "name": f"{more['count']} more",
                    "exit": exits,
                    "duration_s": None,
                    "cpu_s": None,
                    "peak_rss_bytes": None,
                    "errors": more["errors"],
                }
            )
        return rows


def _summary_row(pid: int, row: dict[str, Any]) -> dict[str, Any] | None:
    started, exited, finished = (
        row.get("started"),
        row.get("exited"),
        row.get("finished"),
    )
    if started is None and finished is None:
        return None
    if exited is not None:
        code, sig = exited.get("exitcode"), exited.get("signal")
        exit_text = sig or str(code)
    elif finished is not None:
        exit_text = str(finished.get("exitcode"))
    else:
        exit_text = "running"
    end = exited or finished
    duration = None
    if started is not None and end is not None:
        duration = (end["ts"] - started["ts"]) / 1e9
    cpu = None
    source = finished if finished and finished.get("cpu_user_s") is not None else exited
    if source and source.get("cpu_user_s") is not None:
        cpu = (source.get("cpu_user_s") or 0) + (source.get("cpu_system_s") or 0)
    peaks = [e.get("peak_rss_bytes") for e in (finished, exited) if e]
    peaks = [p for p in peaks if isinstance(p, int)]
    return {
        "pid": pid,
        "name": row.get("name"),
        "exit": exit_text,
        "duration_s": duration,
        "cpu_s": cpu,
        "peak_rss_bytes": max(peaks) if peaks else None,
        "errors": row["errors"],
    }
