"""The write end of this process's pipe to the listener, as a descriptor.

A descriptor number is the program's as much as ours: daemonizing code closes
every descriptor (``os.closerange(3, 4096)``) and the next ``open`` takes the
lowest free number, very likely the stream's. Writing to that number then
puts a frame into the program's file (the stdlib's ``FileHandler`` has this
flaw). So before each write the stream asks whether the number still names
its pipe, and it never writes to, or closes, one that does not.

The question is asked on every record, so its price was measured (2 cores,
``python -m timeit``; a record costs ~8 µs in a child):

* ``os.fstat`` and a compare of ``(st_dev, st_ino)``: exact, ~1.2 µs, most
  of it building the ``stat_result``.
* ``fcntl(F_GETOWN)`` against a mark set at connection: ~0.4 µs. The mark
  is the owner that receives SIGIO, and no signal is sent without
  ``O_ASYNC``, which nobody sets on this pipe. The mark is pid 1: a program
  sets its descriptors' owner to itself, never to init, and a file it opens
  has owner 0, so only our own pipe carries it.
* Checking once in N writes, or on a write error only: lets up to N records
  (or every record, as a write into a file succeeds) into the program's file.

The mark is used where the kernel takes it (Linux, BSD, macOS), ``fstat``
elsewhere. What remains is a race no check can close: another thread that
closes and reopens the number between the check and the ``os.write``.

The acknowledgement slot (``_schema.handshake``) is a descriptor of ours too
(``Owned``): read only if it still is, and closed only then.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import termios
from collections.abc import Callable

#: The owner our pipe's write end is marked with: init, which no program names.
MARK = 1


def claim(fd: int) -> Callable[[], bool]:
    """Mark *fd* (our pipe's write end) and return a check that it still is ours.

    The check costs one system call and never raises.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETOWN, MARK)
        if fcntl.fcntl(fd, fcntl.F_GETOWN) == MARK:
            return _marked(fd)
    except OSError:  # no owner on this kind of descriptor here: fstat
        pass
    return _same_file(fd)


def _marked(fd: int) -> Callable[[], bool]:
    getown, cmd = fcntl.fcntl, fcntl.F_GETOWN

    def ours() -> bool:
        try:
            return getown(fd, cmd) == MARK
        except OSError:  # closed, and not reused (EBADF)
            return False

    return ours


def _same_file(fd: int) -> Callable[[], bool]:
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)

    def ours() -> bool:
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == key

    return ours


def reader_gone(fd: int) -> bool:
    """True when the pipe's read end is closed (the listener died)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(ev & select.POLLERR for _, ev in poller.poll(0))


def unread_bytes(fd: int) -> int:
    """Bytes a pipe still holds (Linux reads this from either end)."""
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return buf[0]
    except OSError:
        return 0


def never() -> bool:
    """The check of a stream with no descriptor."""
    return False


def close(fd: int, ours: Callable[[], bool]) -> None:
    """Close *fd* unless the program closed it first (and may reuse the number)."""
    if ours():
        try:
            os.close(fd)
        except OSError:  # pragma: no cover - ours a moment ago
            pass


class Owned:
    """A descriptor of ours (the acknowledgement slot), and whether it still is."""

    __slots__ = ("fd", "ours")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ours = claim(fd)

    def close(self) -> None:
        close(self.fd, self.ours)
