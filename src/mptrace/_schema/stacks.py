"""The stacks of a process: where its dumps are written, and what they say.

Each participating process has ``faulthandler`` write the Python stack of
every thread it runs, from its C-level signal handler, into files of its own
in the session's private folder::

    SESSION/stacks/PID.ask    on the stacks signal (SIGUSR2 by default)
    SESSION/stacks/PID.stop   on SIGTERM and SIGINT, before the program's
                              own handling of them (which still follows)
    SESSION/stacks/ask-TOKEN  a request for a round (:func:`ask`), holding
                              its reason: `mptrace stacks`, or shutdown
                              waiting for children in vain
    SESSION/stacks/answer-TOKEN  the listener's answer: a ``stacks`` event a line

The handler runs no Python code, so a process blocked in a lock, a queue, a
pipe or in C code that holds the GIL still answers. The listener signals,
collects and parses the dumps (:func:`parse`) into ``stacks`` events.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from typing import Any

from mptrace._schema.events import STACKS, Event

FOLDER = "stacks"
ASK = ".ask"
STOP = ".stop"
REQUEST = "ask-"
ANSWER = "answer-"
#: The signal that asks a process for its stacks unless the run chose another.
DEFAULT_SIGNAL = "SIGUSR2"

#: Why a round of stacks was taken (the event's ``reason``).
ASKED, STOPPED, WAITED = "asked", "stopped", "shutdown-waited"
STALLED = "stalled"  # a pool made no progress for its stall_timeout
REASONS = (ASKED, STOPPED, WAITED, STALLED)

_THREAD = re.compile(
    r"^(Current thread|Thread) (0x[0-9a-fA-F]+) \(most recent call first\):$"
)
_FRAME = re.compile(r'^  File "(.*)", line (\d+|\?\?\?) in (.*)$')


def folder(session_dir: str) -> str:
    return os.path.join(session_dir, FOLDER)


def ask(session_dir: str, timeout: float, reason: str = ASKED) -> list[Event] | None:
    """Ask the session's listener for a round; its events, or None when it
    did not answer within *timeout* seconds. Raises OSError when the stacks
    folder is not there (no process takes stacks)."""
    request = _request(session_dir, reason)
    where, name = os.path.split(request)
    answer = os.path.join(where, ANSWER + name[len(REQUEST) :])
    deadline = time.monotonic() + timeout
    try:
        while not os.path.exists(answer):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        with open(answer, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    finally:
        for path in (request, answer):
            try:
                os.unlink(path)
            except OSError:
                pass


def request(session_dir: str, reason: str) -> None:
    """Ask for a round and go on: its events reach the sinks, its answer
    file stays in the session's folder. Raises OSError as :func:`ask`."""
    _request(session_dir, reason)


def _request(session_dir: str, reason: str) -> str:
    where = folder(session_dir)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    request = os.path.join(where, REQUEST + token)
    draft = os.path.join(where, f".{token}")  # whole when the listener sees it
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, reason.encode())
    finally:
        os.close(fd)
    os.replace(draft, request)
    return request


def parse(text: str) -> list[dict[str, Any]]:
    """The threads of one ``faulthandler.dump_traceback(all_threads=True)``.

    Each thread is ``{"id", "current", "frames"}``, its frames most recent
    call first (as faulthandler writes them), each ``{"file", "line",
    "function"}``. A line of another shape (``<no Python frame>``, the
    ``...`` of a cut stack) is kept as a frame with only ``"note"``.
    """
    threads: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        head = _THREAD.match(line)
        if head is not None:
            frames = []
            threads.append(
                {
                    "id": head.group(2),
                    "current": head.group(1) == "Current thread",
                    "frames": frames,
                }
            )
            continue
        if frames is None:  # "Stack (most recent call first):", one thread
            frames = []
            threads.append({"id": "?", "current": True, "frames": frames})
            if line.startswith("Stack "):
                continue
        frame = _FRAME.match(line)
        if frame is not None:
            number = frame.group(2)
            frames.append(
                {
                    "file": frame.group(1),
                    "line": int(number) if number.isdigit() else None,
                    "function": frame.group(3),
                }
            )
        else:
            frames.append({"note": line.strip()})
    return threads


def stacks_event(
    pid: int,
    process: str,
    reason: str,
    threads: list[dict[str, Any]],
    error: str | None = None,
    ts: int | None = None,
) -> Event:
    """A ``stacks`` event (see docs/jsonl-schema.md)."""
    event: Event = {
        "kind": STACKS,
        "ts": time.time_ns() if ts is None else ts,
        "level": "warning" if error else "info",
        "logger": "mptrace",
        "event": f"stacks of {process}[{pid}] ({reason})",
        "process": process,
        "pid": pid,
        "reason": reason,
        "threads": threads,
    }
    if error:
        event["error"] = error
    return event


def parse_signal(value: object) -> int:
    """The stacks signal's number from ``stacks_signal=`` or the environment.

    A name (``SIGUSR2``, ``USR2``), a number, or ``None``/``0``/``off`` for
    none. Raises ValueError with a sentence saying what is allowed.
    """
    if value is None or value is False:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if text.lower() in ("", "0", "off", "none", "no", "false"):
            return 0
        if text.isdigit():
            number = int(text)
        else:
            name = text.upper()
            name = name if name.startswith("SIG") else "SIG" + name
            found = getattr(signal, name, None)
            if not isinstance(found, signal.Signals):
                raise ValueError(_ALLOWED.format(value=value))
            number = int(found)
    if number == 0:
        return 0
    if number not in _USABLE:
        raise ValueError(_ALLOWED.format(value=value))
    return number


_ALLOWED = (
    "Invalid stacks signal {value!r}: give a signal the program does not use, "
    "by name or number (SIGUSR2, the default, SIGUSR1, SIGWINCH, ...), or "
    "0/off/None for none."
)
#: Signals a stacks dump may take: not one that stops or kills the process,
#: nor those mptrace already watches (SIGTERM, SIGINT) or faulthandler owns.
_TAKEN = (
    "SIGKILL", "SIGSTOP", "SIGTERM", "SIGINT", "SIGSEGV", "SIGFPE", "SIGABRT",
    "SIGBUS", "SIGILL", "SIGCHLD", "SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU",
    "SIGCONT",
)  # fmt: skip
_USABLE = frozenset(int(s) for s in signal.valid_signals() if int(s) > 0) - {
    int(getattr(signal, n)) for n in _TAKEN if hasattr(signal, n)
}
