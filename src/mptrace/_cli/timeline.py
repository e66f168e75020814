"""Events as Chrome trace-event JSON, for Perfetto and ``chrome://tracing``.

::

    {"traceEvents": [...], "displayTimeUnit": "ms"}

A track (``pid``) per process, named by a ``process_name`` metadata event.
Spans are complete slices (``ph: "X"``, ``ts``/``dur`` in µs); a process span
goes on the track of the child it is about. Log records and exits are
instants (``ph: "i"``, ``s: "t"``). Viewers require the slices of one thread
(``pid``/``tid``) to nest, child inside parent; spans of one process that
overlap without nesting (tasks run by threads) are put on threads of their own
(``tid`` 2, 3, ...). Times are whole µs, rounded outwards, so a child that lies
inside its parent in ns still does in µs.

Instants are written as they are read; spans are kept (as small tuples) until
the end, since nesting can only be decided once all of them are known.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from mptrace._cli.reader import Event

#: (start µs, end µs, name, category, args) of one slice.
Slice = tuple[int, int, str, str, dict[str, Any]]


def _us_floor(ns: int) -> int:
    return ns // 1000


def _us_ceil(ns: int) -> int:
    return -(-ns // 1000)


def assign_threads(slices: list[Slice]) -> list[tuple[int, Slice]]:
    """(tid, slice) for each slice, such that slices on one tid nest properly.

    Slices are taken by start time, longest first; each goes on the first
    thread whose open slices it fits inside (after closing those that ended).
    """
    lanes: list[list[tuple[int, int]]] = []  # per tid: the stack of open slices
    placed = []
    for s in sorted(slices, key=lambda s: (s[0], -s[1])):
        start, end = s[0], s[1]
        for tid, stack in enumerate(lanes):
            while stack and stack[-1][1] <= start:
                stack.pop()
            if not stack or (stack[-1][0] <= start and end <= stack[-1][1]):
                stack.append((start, end))
                placed.append((tid + 1, s))
                break
        else:
            lanes.append([(start, end)])
            placed.append((len(lanes), s))
    return placed


class Timeline:
    """Writes trace events to *out* as they come; :meth:`finish` ends the file."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0
        self.names: dict[int, str] = {}
        self.starts: dict[int, int] = {}
        self.slices: dict[int, list[Slice]] = {}
        self.out.write('{"displayTimeUnit": "ms", "traceEvents": [\n')

    def _emit(self, event: dict[str, Any]) -> None:
        if self.count:
            self.out.write(",\n")
        self.out.write(json.dumps(event, separators=(",", ":"), default=str))
        self.count += 1

    def _name(self, pid: int, name: object, ts: int | None) -> None:
        if isinstance(name, str):
            self.names.setdefault(pid, name)
        if ts is not None and (pid not in self.starts or ts < self.starts[pid]):
            self.starts[pid] = ts

    def add(self, event: Event) -> None:
        """Add one event to the trace."""
        pid, kind = event.get("pid"), event.get("kind")
        if type(pid) is not int:
            return
        if kind == "span":
            self._span(pid, event)
            return
        ts = event.get("ts")
        if type(ts) is not int:
            return
        self._name(pid, event.get("process"), ts // 1000)
        if kind == "log":
            args = {"logger": event.get("logger"), "level": event.get("level")}
            if isinstance(event.get("exc"), dict):
                args["exception"] = event["exc"].get("type")
            name = f"{event.get('level', '?')}: {event.get('event', '')}"[:200]
            self._instant(pid, ts, name, "log", args)
        elif kind == "lifecycle" and event.get("transition") == "exited":
            target = event.get("target_pid")
            if type(target) is int:
                self._name(target, event.get("target_name"), None)
                code, sig = event.get("exitcode"), event.get("signal")
                name = f"exited by {sig}" if sig else f"exited with code {code}"
                args = {"exitcode": code, "signal": sig}
                self._instant(target, ts, name, "exit", args)

    def _instant(
        self, pid: int, ts: int, name: str, cat: str, args: dict[str, Any]
    ) -> None:
        self._emit({"ph": "i", "s": "t", "name": name, "cat": cat, "pid": pid,
                    "tid": 1, "ts": _us_floor(ts), "args": args})  # fmt: skip

    def _span(self, pid: int, event: Event) -> None:
        start, end = event.get("start_ns"), event.get("end_ns")
        if type(start) is not int or type(end) is not int:
            return
        attributes = event.get("attributes")
        attributes = attributes if isinstance(attributes, dict) else {}
        category = str(attributes.get("mptrace.span", "span"))
        if category == "process" and type(attributes.get("process.pid")) is int:
            pid = attributes["process.pid"]  # the child's life, on its own track
            self._name(pid, attributes.get("mptrace.process.name"), start // 1000)
        else:
            self._name(pid, event.get("process"), start // 1000)
        args = {"status": event.get("status"), "span_id": event.get("span_id"),
                "trace_id": event.get("trace_id")}  # fmt: skip
        if event.get("status_message"):
            args["status_message"] = event["status_message"]
        piece = (_us_floor(start), max(_us_ceil(end), _us_floor(start)),
                 str(event.get("name", "?")), category, args)  # fmt: skip
        self.slices.setdefault(pid, []).append(piece)

    def finish(self) -> None:
        """Write the slices, the names of tracks and threads, and close the JSON."""
        for pid, slices in self.slices.items():
            threads = 1
            for tid, (start, end, name, cat, args) in assign_threads(slices):
                threads = max(threads, tid)
                if args.get("status") == "error":
                    cat += ",error"
                self._emit({"ph": "X", "name": name, "cat": cat, "pid": pid,
                            "tid": tid, "ts": start, "dur": end - start,
                            "args": args})  # fmt: skip
            for tid in range(2, threads + 1):
                self._emit({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                            "args": {"name": f"overlapping spans {tid}"}})  # fmt: skip
        order = sorted(self.names, key=lambda p: (self.starts.get(p, 0), p))
        for index, pid in enumerate(order):
            label = f"{self.names[pid]} [{pid}]"
            self._emit({"ph": "M", "name": "process_name", "pid": pid, "tid": 1,
                        "args": {"name": label}})  # fmt: skip
            self._emit({"ph": "M", "name": "process_sort_index", "pid": pid,
                        "tid": 1, "args": {"sort_index": index}})  # fmt: skip
            self._emit({"ph": "M", "name": "thread_name", "pid": pid, "tid": 1,
                        "args": {"name": self.names[pid]}})  # fmt: skip
        self.out.write("\n]}\n")
