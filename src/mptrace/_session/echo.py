"""The listener's stderr, brought to the program's ``sys.stderr`` when that is not fd 2.

The console exporter writes in the listener, a process of its own, whose
stderr is normally the program's file descriptor 2. Where the program has
replaced ``sys.stderr`` in-process (Jupyter and IDEs, pytest's ``capsys``),
nothing written to fd 2 reaches what the person sees. Then the listener's
stderr is a pipe, and one thread of the program copies it to ``sys.stderr``
as it comes. The thread is out of the program's sight
(``forksafe.GuestThread``), and paused across forks (``_participant.forksafe``);
``drain`` copies what is there at once (``force_flush``), ``close`` reads to
the end after the listener has exited; a listener that stays on after the
session (for a manager's server, say) is copied until it exits.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from mptrace._participant import forksafe as _forksafe

T = TypeVar("T")

#: Bytes of one unfinished line the relay holds back before it copies them anyway.
RELAY_HOLD = 1 << 20


def wanted() -> bool:
    """``sys.stderr`` is not file descriptor 2 (or has none)."""
    try:
        return sys.stderr.fileno() != 2
    except Exception:  # io.UnsupportedOperation, AttributeError, ValueError
        return True


class StderrRelay:
    """Copies the read end of the listener's stderr pipe to *target*."""

    def __init__(self, read_fd: int, target: TextIO | Any) -> None:
        self.fd = read_fd
        # Two readers (the thread, and drain() in a flush) may both see the
        # pipe readable; the one that comes second must not block.
        os.set_blocking(read_fd, False)
        self.target = target
        self._lock = threading.Lock()  # one copier at a time
        self._wake_r, self._wake_w = os.pipe()
        self._pausing = self._paused = self._closed = False
        self._close_at_end = False
        self._rest = b""  # the start of a line whose end has not come
        _forksafe.register(self)
        self._thread = self._start()

    def _start(self) -> _forksafe.GuestThread:
        return _forksafe.GuestThread(self._run)

    def _run(self) -> None:
        while not self._pausing and not self._closed:
            ready = select.select([self.fd, self._wake_r], [], [])[0]
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
                continue
            if not self._copy():  # the listener's end is closed
                if self._close_at_end:
                    self._close_fds()
                return

    def _copy(self) -> bool:
        """Copy one chunk; False at the end of the pipe."""
        with self._lock:
            return self._copy_held()

    def _copy_held(self) -> bool:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:  # the other reader took it
            return True
        except OSError:
            return False
        if not data:
            self._put(self._rest)  # the end: a last line without its newline
            self._rest = b""
            return False
        # Whole lines only: a line cut between two reads would let the
        # program's own next write land in its middle.
        data = self._rest + data
        end = data.rfind(b"\n") + 1
        if not end and len(data) >= RELAY_HOLD:
            end = len(data)  # a line this long goes as it is
        self._rest = data[end:]
        self._put(data[:end])
        return True

    def _put(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.target.write(data.decode("utf-8", "replace"))
            self.target.flush()
        except Exception:  # the program's stream is gone: nowhere to say it
            pass

    def drain(self) -> None:
        """Copy whatever the pipe holds now, without waiting for more.

        Under the lock: a chunk the thread is copying is written before this
        returns, so a flush's caller sees every line the listener wrote.
        """
        with self._lock:
            while select.select([self.fd], [], [], 0)[0] and self._copy_held():
                pass

    def pause(self) -> None:
        thread = self._thread
        if self._paused or self._closed:
            return
        if not thread.is_alive():  # ended by itself: its OS thread may not have
            _forksafe.end_thread(thread)
            return
        self._pausing = True
        os.write(self._wake_w, b"p")
        _forksafe.end_thread(thread)
        self._paused = True

    def resume(self) -> None:
        if self._paused and not self._closed:
            self._pausing = self._paused = False
            self._thread = self._start()

    def close(self, timeout: float = 5.0) -> None:
        """After the listener has exited: copy the rest, stop, close the pipe."""
        _forksafe.unregister(self)
        self._closed = True
        try:
            os.write(self._wake_w, b"c")
        except OSError:
            pass
        _forksafe.end_thread(self._thread, timeout)
        while select.select([self.fd], [], [], 0)[0] and self._copy():
            pass
        for fd in (self.fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def close_at_end(self) -> None:
        """The listener stays on after the session, for processes that still
        write: copy what it says until it exits, then close, from the thread."""
        self.drain()
        self._close_at_end = True
        if not self._thread.is_alive() and not self._paused:
            self.close()

    def _close_fds(self) -> None:
        _forksafe.unregister(self)
        self._closed = True
        for fd in (self.fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def forget(self) -> None:
        """In a forked child: the thread is not ours, nor the pipe's contents."""
        self._closed = True
        _forksafe.unregister(self)


def start_with_relay(start: Callable[[int | None], T]) -> tuple[StderrRelay | None, T]:
    """``start(stderr_fd)``, with a relay for the listener's stderr when wanted."""
    if not wanted():
        return None, start(None)
    read_fd, write_fd = os.pipe()
    relay = StderrRelay(read_fd, sys.stderr)
    try:
        return relay, start(write_fd)
    except BaseException:
        relay.close()
        raise
    finally:
        os.close(write_fd)
