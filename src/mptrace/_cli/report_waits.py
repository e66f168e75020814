"""Where processes waited: the ``lock wait`` events of a run, added up.

A wait on a multiprocessing lock, semaphore, condition, event or barrier that
lasted the session's threshold or longer is an event ``lock wait`` on a span
of the process that waited (the span's ``pid``), with its duration, the
primitive's kind and the place the program made it
(``_instrument.waits``). Here they are added up twice: per process (where
it waited most, its longest wait) and per place across processes (the locks
that were contended). Memory grows with processes and places, which are
capped, not with waits.
"""

from __future__ import annotations

from mptrace._cli.reader import Event

EVENT = "lock wait"
DURATION = "mptrace.wait.duration"
KIND = "mptrace.wait.kind"
PLACE = "mptrace.wait.place"
OUTCOME = "mptrace.wait.outcome"
#: Places kept, per process and in all; waits at others are only counted.
MAX_PLACES = 1000
#: Lines of each list the report shows.
SHOWN = 10


class Place:
    """Waits at one place (a lock the program made there)."""

    __slots__ = ("count", "kind", "longest_s", "pids", "timed_out", "total_s")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.count = self.timed_out = 0
        self.total_s = self.longest_s = 0.0
        self.pids: set[int] = set()

    def add(self, seconds: float, outcome: object, pid: int) -> None:
        self.count += 1
        self.total_s += seconds
        self.longest_s = max(self.longest_s, seconds)
        self.timed_out += outcome in ("timed out", "broken")
        if len(self.pids) < MAX_PLACES:
            self.pids.add(pid)


class Waiter:
    """One process's waits, by place."""

    __slots__ = ("count", "name", "pid", "places", "total_s")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.name = "?"
        self.count = 0
        self.total_s = 0.0
        self.places: dict[str, Place] = {}

    def longest(self) -> tuple[str, Place]:
        """The place of its longest single wait."""
        return max(self.places.items(), key=lambda item: item[1].longest_s)

    def most(self) -> tuple[str, Place]:
        """The place where it waited longest in all."""
        return max(self.places.items(), key=lambda item: item[1].total_s)


class Waits:
    """Every ``lock wait`` of a run, per process and per place."""

    def __init__(self) -> None:
        self.waiters: dict[int, Waiter] = {}
        self.places: dict[str, Place] = {}
        self.count = 0

    def add(self, span: Event) -> None:
        """Take the waits of one span."""
        events = span.get("events")
        pid = span.get("pid")
        if not isinstance(events, list) or type(pid) is not int:
            return
        for item in events:
            if not isinstance(item, dict) or item.get("name") != EVENT:
                continue
            attributes = item.get("attributes")
            if not isinstance(attributes, dict):
                continue
            seconds = attributes.get(DURATION)
            if not isinstance(seconds, (int, float)):
                continue
            place = str(attributes.get(PLACE, "?"))
            kind = str(attributes.get(KIND, "?"))
            outcome = attributes.get(OUTCOME)
            self.count += 1
            waiter = self.waiters.get(pid) or self.waiters.setdefault(pid, Waiter(pid))
            if isinstance(span.get("process"), str):
                waiter.name = span["process"]
            waiter.count += 1
            waiter.total_s += seconds
            for places in (waiter.places, self.places):
                found = places.get(place)
                if found is None and len(places) < MAX_PLACES:
                    found = places[place] = Place(kind)
                if found is not None:
                    found.add(float(seconds), outcome, pid)

    def by_total(self) -> list[Waiter]:
        """The processes that waited, the most in all first."""
        found = [w for w in self.waiters.values() if w.places]
        return sorted(found, key=lambda w: -w.total_s)

    def contended(self) -> list[tuple[str, Place]]:
        """The places waited at, the most in all first."""
        return sorted(self.places.items(), key=lambda item: -item[1].total_s)


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _times(n: int) -> str:
    return f"{n} wait{'s' * (n != 1)}"


def waiter_lines(waits: Waits, names: dict[int, str]) -> list[str]:
    """Per process, where it waited (text and HTML say the same)."""
    out = []
    for w in waits.by_total()[:SHOWN]:
        place, most = w.most()
        far, longest = w.longest()
        line = (
            f"{names.get(w.pid, w.name)}[{w.pid}] waited {_s(w.total_s)} in "
            f"{_times(w.count)}; most at {place} ({most.kind}, {_s(most.total_s)} "
            f"in {_times(most.count)}), longest {_s(longest.longest_s)}"
        )
        if far != place:
            line += f" at {far} ({longest.kind})"
        out.append(line)
    return out


def place_lines(waits: Waits, names: dict[int, str]) -> list[str]:
    """Per place, across processes: the contended locks."""
    out = []
    for place, p in waits.contended()[:SHOWN]:
        who = ", ".join(f"{names.get(pid, '?')}[{pid}]" for pid in sorted(p.pids)[:8])
        more = f" and {len(p.pids) - 8} more" if len(p.pids) > 8 else ""
        timed = f", {p.timed_out} timed out" if p.timed_out else ""
        out.append(
            f"{place} ({p.kind}): {_times(p.count)}, {_s(p.total_s)} in all, "
            f"longest {_s(p.longest_s)}{timed}; by {who}{more}"
        )
    return out
