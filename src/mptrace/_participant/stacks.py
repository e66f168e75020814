"""This process's stacks, on a signal, from C: no Python code of ours runs.

At join, ``faulthandler`` is registered on the run's stacks signal (SIGUSR2
by default) to write every thread's stack into ``stacks/PID.ask`` of the
session's private folder, and on SIGTERM and SIGINT, chained to what the
program has there (death by SIGTERM, ``KeyboardInterrupt``), into
``stacks/PID.stop``: the stacks of a stopped run are those of the moment it
was stopped, before anything unwinds. The handler works while the process is
blocked in a lock, a queue, a pipe, or in C code holding the GIL.

A signal the program handles already (a handler of its own, or one it
ignores) is left alone. The files are opened at join and stay open, as
faulthandler needs; they are close-on-exec, so a program this one runs
never inherits them. A forked child writes files of its own. No thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from mptrace._schema import stacks as _stacks

try:
    import faulthandler

    _CAN = hasattr(faulthandler, "register")
except ImportError:  # pragma: no cover - a Python without it
    _CAN = False

#: The program's own handler of these is taken over only while it is the default.
_STOPS = (("SIGTERM", signal.SIG_DFL), ("SIGINT", signal.default_int_handler))


class _Armed:
    """What this process registered: (signal, descriptor) pairs, and where."""

    def __init__(self, session_dir: str, signum: int) -> None:
        self.session_dir = session_dir
        self.signum = signum
        self.pid = os.getpid()
        self.registered: list[tuple[int, Any]] = []  # (signal, its default)
        self.fds: list[int] = []


_armed: _Armed | None = None
_fork_hooked = False


def arm(session_dir: str, signum: int) -> None:
    """Have this process write its stacks on *signum* and on SIGTERM/SIGINT.

    Never raises: a process that cannot is one without stacks.
    """
    global _armed, _fork_hooked
    if not _CAN or not session_dir or not signum or _armed is not None:
        return
    armed = _Armed(session_dir, signum)
    try:
        _register(armed)
    except (OSError, ValueError, RuntimeError):
        _unregister(armed)
        return
    _armed = armed
    if not _fork_hooked:
        _fork_hooked = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def disarm() -> None:
    """Give back the signals this process took, and close its files."""
    global _armed
    armed, _armed = _armed, None
    if armed is not None:
        _unregister(armed)


def _register(armed: _Armed) -> None:
    where = _stacks.folder(armed.session_dir)
    os.makedirs(where, mode=0o700, exist_ok=True)
    wanted: list[tuple[int, Any, str, bool]] = []
    if armed.signum and _is_default(armed.signum, signal.SIG_DFL):
        wanted.append((armed.signum, signal.SIG_DFL, _stacks.ASK, False))
    for name, default in _STOPS:
        number = getattr(signal, name)
        if _is_default(number, default):
            wanted.append((number, default, _stacks.STOP, True))
    opened: dict[str, int] = {}
    for number, default, suffix, chain in wanted:
        fd = opened.get(suffix)
        if fd is None:
            path = os.path.join(where, f"{armed.pid}{suffix}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            fd = opened[suffix] = os.open(path, flags, 0o600)
            armed.fds.append(fd)
        faulthandler.register(number, file=fd, all_threads=True, chain=chain)
        armed.registered.append((number, default))


def _is_default(signum: int, default: Any) -> bool:
    try:
        return signal.getsignal(signum) is default
    except (OSError, ValueError):
        return False


def _unregister(armed: _Armed) -> None:
    for number, default in armed.registered:
        # A handler the program set since is its own (and in place): keep it.
        if _is_default(number, default):
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                faulthandler.unregister(number)
    armed.registered.clear()
    for fd in armed.fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    armed.fds.clear()


def _after_fork_in_child() -> None:
    """The parent's files are the parent's: this child writes its own."""
    global _armed
    armed, _armed = _armed, None
    if armed is not None:
        _unregister(armed)  # faulthandler must not keep a descriptor closed here
        arm(armed.session_dir, armed.signum)
