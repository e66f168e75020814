"""A ``stacks`` event as text: for ``mptrace stacks`` and ``mptrace report``.

One block per process, named ``name[pid]`` as the console names it, then
each thread and its frames, most recent call first (as faulthandler and
py-spy show them: the line a stuck process waits on comes first)::

    MainProcess[4120] (asked): 1 thread
      Thread 0x00007f5e0c1c3740, the main thread:
        File "deadlock.py", line 17 in main
        File "deadlock.py", line 24 in <module>
"""

from __future__ import annotations

from typing import Any

from mptrace._schema.events import Event


def stacks_lines(event: Event) -> list[str]:
    """The lines of one process's stacks, unindented header first."""
    threads = event.get("threads")
    threads = threads if isinstance(threads, list) else []
    who = f"{event.get('process', '?')}[{event.get('pid', '?')}]"
    n = len(threads)
    head = f"{who} ({event.get('reason', '?')}): {n} thread{'' if n == 1 else 's'}"
    if event.get("error"):
        head += f"; {event['error']}"
    lines = [head]
    last = len(threads) - 1
    for i, thread in enumerate(threads):
        if not isinstance(thread, dict):
            continue
        # faulthandler lists the newest thread first: the main thread is the last.
        what = ", the main thread" if i == last and n > 1 else ""
        what += " (the one that took the signal)" if thread.get("current") else ""
        lines.append(f"  Thread {thread.get('id', '?')}{what}:")
        frames = list(thread.get("frames") or ())
        runner = _runner_frames(frames)
        lines.extend(f"    {frame_text(f)}" for f in frames[: len(frames) - runner])
        if runner:
            lines.append(f"    ({runner} frames of `mptrace run` below)")
    return lines


#: The frame ``mptrace run`` runs the program from: it and the frames under
#: it (the command, click) are the runner's, not the program's.
_RUNNER = ("/mptrace/_session/run.py", "_execute")


def _runner_frames(frames: list[Any]) -> int:
    for i, frame in enumerate(frames):
        if (
            isinstance(frame, dict)
            and str(frame.get("file", "")).endswith(_RUNNER[0])
            and frame.get("function") == _RUNNER[1]
        ):
            return len(frames) - i
    return 0


def frame_text(frame: Any) -> str:
    if not isinstance(frame, dict):
        return str(frame)
    if "note" in frame:
        return str(frame["note"])
    line = frame.get("line")
    return (
        f'File "{frame.get("file", "?")}", line {"???" if line is None else line}'
        f" in {frame.get('function', '?')}"
    )


def stacks_text(events: list[Event]) -> str:
    """Every process's block, a blank line between two."""
    return "\n\n".join("\n".join(stacks_lines(e)) for e in events)
