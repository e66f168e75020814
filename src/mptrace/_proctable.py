"""The listener's table of every child process of the session.

Lifecycle records fill it from two sides: the parent says created, started,
terminated and exited; the child says running and finished (with its own
``getrusage`` and, when it raised, the exception). The table completes each
process span with what the child said before the span is exported, and gives
the console its summary at shutdown.
"""

from __future__ import annotations

from typing import Any

from ._events import ERROR_RANK, exception_attributes


class ProcessTable:
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def _row(self, pid: int) -> dict[str, Any]:
        row = self.rows.get(pid)
        if row is None:
            row = self.rows[pid] = {"pid": pid, "errors": 0}
        return row

    def on_lifecycle(self, event: dict[str, Any]) -> None:
        pid = event.get("target_pid")
        if type(pid) is not int:
            return
        row = self._row(pid)
        transition = event.get("transition")
        row["name"] = event.get("target_name") or row.get("name")
        row[str(transition)] = event

    def on_log(self, pid: object, rank: int) -> None:
        """Count a log record of *pid* by the level rank its frame carries."""
        if rank >= ERROR_RANK and type(pid) is int:
            self._row(pid)["errors"] += 1

    def complete_span(self, span: dict[str, Any]) -> None:
        """Add the child's own account to its process span (in place)."""
        attributes = span.get("attributes") or {}
        pid = attributes.get("process.pid")
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

    def summary(self) -> list[dict[str, Any]]:
        """One row per child: pid, name, exit, duration_s, cpu_s, peak_rss_bytes,
        errors."""
        rows = []
        for pid, row in sorted(self.rows.items()):
            started, exited, finished = (
                row.get("started"),
                row.get("exited"),
                row.get("finished"),
            )
            if started is None and finished is None:
                continue
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
            source = (
                finished
                if finished and finished.get("cpu_user_s") is not None
                else exited
            )
            if source and source.get("cpu_user_s") is not None:
                cpu = (source.get("cpu_user_s") or 0) + (
                    source.get("cpu_system_s") or 0
                )
            peaks = [e.get("peak_rss_bytes") for e in (finished, exited) if e]
            peaks = [p for p in peaks if isinstance(p, int)]
            rows.append(
                {
                    "pid": pid,
                    "name": row.get("name"),
                    "exit": exit_text,
                    "duration_s": duration,
                    "cpu_s": cpu,
                    "peak_rss_bytes": max(peaks) if peaks else None,
                    "errors": row["errors"],
                }
            )
        return rows
