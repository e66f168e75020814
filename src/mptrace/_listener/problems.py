"""What the listener says at the end: records lost, connections refused,
batches a sink failed to take, events a sink dropped.

Said on stderr once when the owner's session ends; a process that outlives
the session (a manager's server, a reusable executor's worker) keeps the
listener on, and whatever comes after is said once more at the very end.
"""

from __future__ import annotations

import sys
from typing import Any

#: Per process, its latest totals of records it gave again, put on stderr
#: and lost since a listener died (``_participant.revive.told``).
given_again: dict[object, tuple[int, ...]] = {}


def note_totals(hello: dict[str, Any]) -> None:
    """Keep the totals a writer's ``hello`` carries, the latest of each."""
    counts = tuple(
        n if type(n) is int and n > 0 else 0
        for n in map(hello.get, ("again", "stderr", "lost"))
    )
    if any(counts):
        given_again[hello.get("pid")] = counts


class Problems:
    """Counts by kind, said as the part not yet said."""

    def __init__(self) -> None:
        self.extra: dict[str, int] = {}  # sentences said as they are
        self._said: dict[str, int] = {}
        self._said_any = False
        self._said_took_over = False

    def took_over(self, why: str, totals: dict[object, tuple[int, ...]]) -> None:
        """Say once that this listener replaced one that died of *why*, and
        what its writers (their *totals*, by pid) gave again, put on their
        stderr and lost."""
        if why and not self._said_took_over:
            self._said_took_over = True
            again = sum(t[0] for t in totals.values())
            on_stderr = sum(t[1] for t in totals.values())
            lost = sum(t[2] for t in totals.values())
            stderr(
                f"mptrace: the listener died ({why}); a new one took over; "
                f"{again} record{'' if again == 1 else 's'} given again, "
                f"{on_stderr} on stderr, {lost} lost.\n"
            )

    def say(self, counts: dict[str, int], sinks: list[Any]) -> None:
        lines = []
        for key, count in {**counts, **self.extra}.items():
            new = count - self._said.get(key, 0)
            if new <= 0:
                continue
            self._said[key] = count
            lines.append(_sentence(key, new, sinks))
        if lines:
            after = " after the session" if self._said_any else ""
            self._said_any = True
            stderr(f"mptrace: at shutdown{after}: " + "; ".join(lines) + ".\n")


def sink_name(sink: Any) -> str:
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) else type(sink).__name__


def _sentence(key: str, count: int, sinks: list[Any]) -> str:
    if key == "lost":
        return f"{count} record{'' if count == 1 else 's'} lost"
    if key == "refused":
        return f"{count} connection{'' if count == 1 else 's'} refused"
    if key == "failed":
        return f"{count} batches an exporter failed to take"
    if key.startswith("dropped "):
        name = key[len("dropped ") :]
        what = next(
            (
                getattr(s, "dropped_what", "events")
                for s in sinks
                if sink_name(s) == name
            ),
            "events",
        )
        return f"{count} {what} dropped by {name}"
    return key


def stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover - nowhere left to say it
        pass
