"""Colours for the processes of a run, and the mark of a process that failed.

A colour hashed from the pid gave 11 processes 8 colours, a crashing child
sharing one with a healthy child. A :class:`Palette` hands out colours in
the order processes first appear, so the first 16 of a run all differ; past
that they repeat, and a process that ended badly carries a red mark besides
its colour, so it is never mistaken for the healthy one that shares it.
"""

from __future__ import annotations

RESET = "\x1b[0m"
#: 256-colour foregrounds that read on dark and light backgrounds alike,
#: neighbours far apart in hue; no red, which marks failure.
COLOURS = tuple(
    f"\x1b[38;5;{n}m"
    for n in (33, 208, 34, 170, 37, 136, 99, 166, 30, 163, 64, 68, 130, 127, 28, 25)
)
#: What a process that ended badly wears before its name.
FAIL_MARK = "\x1b[1;31m✗\x1b[0m "
#: Processes whose colour is remembered; past it the table starts again
#: (a run with this many processes repeats colours anyway).
REMEMBERED = 10_000


class Palette:
    """The colour of each process, by order of first appearance."""

    __slots__ = ("colours", "failed")

    def __init__(self) -> None:
        self.colours: dict[object, str] = {}
        self.failed: set[object] = set()

    def colour(self, pid: object) -> str:
        key = str(pid)
        colour = self.colours.get(key)
        if colour is None:
            if len(self.colours) >= REMEMBERED:
                self.colours.clear()
            colour = self.colours[key] = COLOURS[len(self.colours) % len(COLOURS)]
        return colour

    def fail(self, pid: object) -> None:
        """Mark *pid* as a process that ended badly, from now on."""
        if len(self.failed) >= REMEMBERED:
            self.failed.clear()
        self.failed.add(str(pid))

    def has_failed(self, pid: object) -> bool:
        return str(pid) in self.failed

    def paint(self, pid: object, text: str) -> str:
        """*text* in *pid*'s colour, marked when the process failed."""
        mark = FAIL_MARK if str(pid) in self.failed else ""
        return f"{mark}{self.colour(pid)}{text}{RESET}"
