"""A ``stacks`` event as text: for ``mptrace stacks`` and ``mptrace report``.

One block per process, named ``name[pid]`` as the console names it, then
each thread and its frames, most recent call first (as faulthandler and
py-spy show them: the line a stuck process waits on comes first)::

    MainProcess[4120] (asked): 1 thread
      Thread 0x00007f5e0c1c3740, the main thread:
        File "deadlock.py", line 17 in main
        File "deadlock.py", line 24 in <module>

mptrace's own frames and threads are left out unless asked for
(``mptrace stacks --all-frames``; the JSON lines keep them all): what is
left is the program's view, as in its tracebacks.
"""

from __future__ import annotations

import os
import re
from typing import Any

from mptrace._schema.events import Event


def stacks_lines(event: Event, all_frames: bool = False) -> list[str]:
    """The lines of one process's stacks, unindented header first. Unless
    *all_frames*, mptrace's own frames are left out (as from the program's
    tracebacks), and so are its own threads (the exit monitor's), each with
    a line that says how many went."""
    threads = event.get("threads")
    threads = threads if isinstance(threads, list) else []
    who = f"{event.get('process', '?')}[{event.get('pid', '?')}]"
    body: list[str] = []
    shown = hidden = 0
    last = len(threads) - 1
    for i, thread in enumerate(threads):
        if not isinstance(thread, dict):
            continue
        frames = list(thread.get("frames") or ())
        runner = _runner_frames(frames)
        frames = frames[: len(frames) - runner]
        if not all_frames and _own_thread(frames):
            hidden += 1
            continue
        kept = frames if all_frames else [f for f in frames if not _ours(f)]
        shown += 1
        # faulthandler lists the newest thread first: the main thread is the last.
        what = ", the main thread" if i == last and last > 0 else ""
        what += " (the one that took the signal)" if thread.get("current") else ""
        body.append(f"  Thread {thread.get('id', '?')}{what}:")
        body.extend(f"    {frame_text(f)}" for f in kept)
        if len(kept) < len(frames):
            left_out = _count(len(frames) - len(kept), "frame")
            body.append(f"    ({left_out} of mptrace's left out)")
        if runner:
            body.append(f"    ({runner} frames of `mptrace run` below)")
    head = f"{who} ({event.get('reason', '?')}): {_count(shown, 'thread')}"
    if hidden:
        head += f" (and {_count(hidden, 'thread')} of mptrace's)"
    if event.get("error"):
        head += f"; {event['error']}"
    return [head, *body]


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _own_thread(frames: list[Any]) -> bool:
    """A thread mptrace started (the exit monitor's): what it runs is
    mptrace's, and no frame of it is the program's (only mptrace's and the
    standard library's)."""
    entry = [f for f in frames if not _in(f, "threading.py")]
    if not entry or not _ours(entry[-1]):
        return False
    known = [f for f in frames if isinstance(f, dict) and "note" not in f]
    return all(_ours(f) or _stdlib(f) for f in known)


def _in(frame: Any, name: str) -> bool:
    path = str(frame.get("file", "")) if isinstance(frame, dict) else ""
    return path.endswith(os.sep + name)


#: A module of the standard library, of whichever Python the process ran.
_STDLIB = re.compile(r"[/\\]lib[/\\]python3\.\d+[/\\](?!site-packages|dist-packages)")


def _stdlib(frame: Any) -> bool:
    return isinstance(frame, dict) and bool(_STDLIB.search(str(frame.get("file", ""))))


def _ours(frame: Any) -> bool:
    """A frame in a module of mptrace's (wherever the process had it)."""
    if not isinstance(frame, dict):
        return False
    path = str(frame.get("file", ""))
    cut = path.rfind(_PACKAGE)
    return cut >= 0 and path[cut + len(_PACKAGE) :] in _own_files()


_PACKAGE = os.sep + "mptrace" + os.sep
_files: frozenset[str] | None = None


def _own_files() -> frozenset[str]:
    """mptrace's modules, as paths under its folder (``_instrument/waits.py``)."""
    global _files
    if _files is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        _files = frozenset(
            os.path.relpath(os.path.join(folder, name), root)
            for folder, _, names in os.walk(root)
            for name in names
            if name.endswith(".py")
        )
    return _files


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


def stacks_text(events: list[Event], all_frames: bool = False) -> str:
    """Every process's block, a blank line between two."""
    return "\n\n".join("\n".join(stacks_lines(e, all_frames)) for e in events)
