"""How each child ended, and the one console line a bad end gets.

A child that starts, runs and exits 0 is the normal case and says nothing
on a quiet console. One that ends badly gets one line, at the level its end
deserves, naming the process, how it ended and where to look::

    [error  ] transform-3[27211] exited with code 70; its last records are above
    [error  ] worker-1[123] exited with code 1 after raising ValueError: bad;
              its traceback is in the record above
    [error  ] worker-2[124] died of SIGSEGV; the stack of every thread is
              in the record above
    [warning] worker-3[125] was stopped by terminate() (SIGTERM)

(the process named is the one that ended, in its colour and marked).

The records come from both sides: the parent's ``terminated`` and
``exited``, the child's ``finished`` (with the exception it raised). A
pool's workers ended by the pool itself (``Pool.terminate()``, leaving a
``with Pool()`` block) ended as asked, not badly.
"""

from __future__ import annotations

from typing import Any

from mptrace._schema import events as _events

#: Signals that mean a crash: the parent logs the child's stack as an error.
CRASHES = frozenset(("SIGSEGV", "SIGABRT", "SIGFPE", "SIGBUS", "SIGILL"))
_ASKED = frozenset(("SIGTERM", "SIGKILL"))
#: Children remembered between their records (terminated or raised, then exited).
REMEMBERED = 10_000


class Endings:
    """Remembers what a child's earlier records said, until it has exited."""

    def __init__(self, report_file: str | None = None) -> None:
        #: Said after the hint of an error, when the run has a JSON-lines file.
        self.more = f"; see also: mptrace report {report_file}" if report_file else ""
        self.stopped: dict[Any, tuple[str, bool]] = {}  # pid -> (how, by its pool)
        self.raised: dict[Any, dict[str, Any]] = {}
        #: Children that died of the signal terminate() or kill() sent: no failure.
        self.asked: set[Any] = set()

    def note(self, event: dict[str, Any]) -> None:
        """Remember a ``terminated`` or a ``finished`` that raised."""
        pid = event.get("target_pid")
        transition = event.get("transition")
        if transition == "terminated":
            _bounded(self.stopped)[pid] = (str(event.get("how", "?")), _by_pool(event))
        elif transition == "finished" and event.get("outcome") == "raised":
            exc = event.get("exc")
            _bounded(self.raised)[pid] = exc if isinstance(exc, dict) else {}

    def bad_end(self, event: dict[str, Any]) -> tuple[str, str] | None:
        """(level, text) of an ``exited`` that ended badly; None for a good end."""
        pid = event.get("target_pid")
        stopped = self.stopped.pop(pid, None)
        exc = self.raised.pop(pid, None)
        sig = signal_name(event)
        code = event.get("exitcode")
        if sig and stopped is not None and sig in _ASKED:
            if len(self.asked) >= REMEMBERED:
                self.asked.clear()
            self.asked.add(pid)
            if stopped[1]:
                return None  # the pool's own ending of its workers
            return "warning", f"was stopped by {stopped[0]}() ({sig})"
        if sig in CRASHES:
            where = (
                "; the stack of every thread is in the record above"
                if event.get("crash")
                else "; its last records are above"
            )
            return "error", f"died of {sig}{where}{self.more}"
        if sig:
            return "error", (
                f"was killed by {sig}, not by this program; "
                f"its last records are above{self.more}"
            )
        if code is None:
            return "warning", "ended; its exit code is unknown"
        if code == 0:
            return None
        if exc is not None:
            why = f"{exc.get('type', '?')}: {exc.get('message', '')}"
            return "error", (
                f"exited with code {code} after raising {why}; "
                f"its traceback is in the record above{self.more}"
            )
        return "error", (
            f"exited with code {code}; its last records are above{self.more}"
        )


def signal_name(event: dict[str, Any]) -> str | None:
    """The signal that ended the process, from ``signal`` or a negative exit code."""
    name = event.get("signal")
    return str(name) if name else _events.signal_name(event.get("exitcode"))


def _by_pool(event: dict[str, Any]) -> bool:
    return bool(event.get("by_pool"))


def _bounded(table: dict[Any, Any]) -> dict[Any, Any]:
    if len(table) >= REMEMBERED:
        table.clear()
    return table
