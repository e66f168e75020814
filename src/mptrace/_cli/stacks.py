"""``mptrace stacks``: the stacks of every process of a run that is going.

The run is found by its session folder (``mptrace-PID-XXXX`` in the temporary
folder, private to its user) or by the pid of its owner. The command leaves
a request in ``SESSION/stacks``; the run's listener signals every process,
collects what faulthandler wrote, sends the ``stacks`` events to the run's
exporters and answers with them (``_listener.stacks``). No ptrace, no
Python code of the command in the run's processes.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from mptrace._schema import folders as _folders
from mptrace._schema import stacks as _stacks
from mptrace.exceptions import ConfigurationError


def _bases() -> list[str]:
    bases = [tempfile.gettempdir(), "/tmp"]
    return list(dict.fromkeys(b for b in bases if os.path.isdir(b)))


def running_sessions(owner: int | None = None) -> list[str]:
    """This user's session folders whose owner is alive, newest first."""
    found = []
    for base in _bases():
        for entry, pid, info in _folders.mine(base):
            if owner is not None and pid != owner:
                continue
            sock = os.path.join(entry.path, "funnel.sock")
            if os.path.exists(sock) and _folders.alive(pid):
                found.append((info.st_mtime, entry.path))
    return [path for _, path in sorted(found, reverse=True)]


def find_session(target: str | None) -> str:
    """The session folder of *target*: a folder, an owner's pid, or None (the
    one run of this user that is going). Raises ConfigurationError."""
    if target and not target.isdigit():
        path = os.path.abspath(target)
        if os.path.basename(path) == "funnel.sock":
            path = os.path.dirname(path)
        if not os.path.exists(os.path.join(path, "funnel.sock")):
            raise ConfigurationError(
                f"{target} is not the folder of a running mptrace session "
                "(a mptrace-PID-XXXX folder holding funnel.sock)."
            )
        return path
    found = running_sessions(int(target) if target else None)
    if not found:
        raise ConfigurationError(
            f"No mptrace run owned by pid {target} is going."
            if target
            else "No mptrace run of yours is going."
        )
    if len(found) > 1 and not target:
        raise ConfigurationError(
            "Several mptrace runs are going; name one by its folder or its "
            "owner's pid: " + ", ".join(found)
        )
    return found[0]


def ask(session_dir: str, timeout: float) -> list[dict[str, Any]]:
    """Have the run's listener take every process's stacks; its events."""
    try:
        events = _stacks.ask(session_dir, timeout)
    except OSError:
        raise ConfigurationError(
            "This run takes no stacks: its stacks signal is off "
            "(stacks_signal=None or MPTRACE_STACKS_SIGNAL=0)."
        ) from None
    if events is None:
        raise ConfigurationError(
            f"The run's listener did not answer within {timeout:g} s; "
            "has the run ended?"
        )
    return events
