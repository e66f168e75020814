"""Session folders: ``mptrace-OWNERPID-XXXXXXXX`` in the temporary folder.

A session's folder is made by its owner (``_session.launch``), private to its
user; ``mptrace stacks`` finds a running one by it, and a new session sweeps
the folders of owners that died without removing theirs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

#: The start of every session folder's name.
PREFIX = "mptrace"


def name_prefix(owner_pid: int) -> str:
    """What the name of a session folder of *owner_pid* starts with."""
    return f"{PREFIX}-{owner_pid}-"


def owner_of(name: str) -> int | None:
    """The owner's pid in a session folder's *name*; None for another name."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1])


def mine(base: str) -> Iterator[tuple[os.DirEntry[str], int, os.stat_result]]:
    """This user's session folders in *base*: each entry, its owner's pid and
    its ``lstat``. Nothing when *base* cannot be read."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    uid = os.getuid()
    for entry in entries:
        owner = owner_of(entry.name)
        if owner is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid == uid:
            yield entry, owner, info


def alive(pid: int) -> bool:
    """Whether process *pid* exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
