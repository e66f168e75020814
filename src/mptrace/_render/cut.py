"""A value too long for a person's screen, cut in the middle with a note.

A 1 MB exception text is one console entry; printed whole it floods the
terminal and buries every other process's lines. The console shows its
beginning and its end (where a traceback names the error), and says how many
characters it left out; the JSON lines keep the whole text.
"""

from __future__ import annotations

#: Characters of one value the console shows: its first HEAD and last TAIL.
HEAD = 3000
TAIL = 1000


def cut(text: str) -> str:
    """*text*, or its head and tail around a note of how much was cut."""
    left_out = len(text) - HEAD - TAIL
    if left_out <= 0:
        return text
    note = f"\n[mptrace: {left_out:,} characters cut here; the JSON lines keep them]\n"
    return text[:HEAD] + note + text[-TAIL:]
