"""Transport, sending side: this process's own pipe to the listener.

Every participating process owns one stream::

    connect to the AF_UNIX socket ──▶ HMAC challenge both ways
        (multiprocessing.connection) ──▶ hand the listener the read end of a
        new pipe (SCM_RIGHTS) ──▶ close the socket
    pipe: hello, frame, frame, ... ──▶ EOF: the process is gone

The socket is only the door: records travel through the pipe because a pipe
write costs a quarter of an ``AF_UNIX`` send on Linux (measured ~1 µs against
~4.5 µs for a 150-byte record), and that call is on every logging call's path.

``Stream.send`` numbers an event, encodes it (``_events.encode``) and writes
it before it returns, so a process that then calls ``os._exit``, is
SIGKILLed or segfaults loses nothing it already sent. No lock is shared with
another process. When the listener is gone (or stops reading for longer than
``block_timeout`` seconds), the stream says so once on stderr and hands every
later event to its *fallback* (the participant renders it on stderr): nothing
is dropped and nothing blocks.

A send that starts while this thread is already inside ``send`` (a signal
handler that logs, a ``__repr__`` that logs while its record is encoded) is
queued and written right after the outer one: it never waits on a lock its
own thread holds.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

from . import _events
from ._events import Event
from ._plain import safe_repr

#: Seconds a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 5.0
#: Bytes a stream's pipe holds before a writer waits (Linux; elsewhere the default).
PIPE_SIZE = 256 * 1024


# -- the handshake, both ends ---------------------------------------------------


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each blocking send in the kernel (``SO_SNDTIMEO``).

    A timeout on the Python socket object would poll before every send; the
    kernel option costs nothing.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(seconds))


def set_recv_timeout(sock: socket.socket, seconds: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))


def challenge(sock: socket.socket, authkey: bytes, *, server: bool) -> None:
    """Both sides prove they hold *authkey*; raises ``AuthenticationError``."""
    set_recv_timeout(sock, HANDSHAKE_TIMEOUT)
    set_send_timeout(sock, HANDSHAKE_TIMEOUT)
    # A duplicate descriptor: closing the Connection leaves *sock* open.
    conn = Connection(os.dup(sock.fileno()))
    try:
        if server:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
        else:
            answer_challenge(conn, authkey)
            deliver_challenge(conn, authkey)
    finally:
        conn.close()


def open_pipe(address: str, authkey: bytes, timeout: float) -> int:
    """Connect, authenticate and hand the listener a pipe; return its write end.

    The write end is non-blocking: the caller bounds its waits itself.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.settimeout(None)
        challenge(sock, authkey, server=False)
        read_end, write_end = os.pipe()
        try:
            _grow_pipe(write_end)
            set_send_timeout(sock, timeout)
            socket.send_fds(sock, [b"p"], [read_end])
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
    finally:
        sock.close()
    os.set_blocking(write_end, False)
    return write_end


def take_pipe(sock: socket.socket, authkey: bytes) -> int:
    """Authenticate the peer on *sock*, then take the pipe it hands over.

    Returns the read end (non-blocking). Raises ``AuthenticationError`` or
    ``OSError`` when the peer does not hold *authkey* or sends no pipe.
    """
    sock.setblocking(True)
    challenge(sock, authkey, server=True)
    set_recv_timeout(sock, HANDSHAKE_TIMEOUT)
    _, fds, _, _ = socket.recv_fds(sock, 16, 4)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"expected one pipe after the handshake, got {len(fds)}")
    os.set_blocking(fds[0], False)
    return fds[0]


def _grow_pipe(fd: int) -> None:
    if sys.platform == "linux":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's pipe budget: keep the default
            pass


# -- the stream -----------------------------------------------------------------


class Stream:
    """This process's connection to the listener at *address*.

    *hello* is the first event of every connection (who is writing);
    *fallback* takes each event the listener could not.
    """

    def __init__(
        self,
        address: str,
        authkey: bytes,
        block_timeout: float,
        hello: Callable[[], Event],
        fallback: Callable[[Event], None],
    ) -> None:
        self.address = address
        self.authkey = authkey
        self.block_timeout = block_timeout
        self.hello = hello
        self.fallback = fallback
        self.fallback_count = 0
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.RLock()
        self._busy = False  # this thread is inside send (under _lock)
        self._pending: list[Event] = []
        self._fd: int | None = None
        self._failed = False
        self._seq = 0

    def after_fork_in_child(self) -> None:
        """The inherited pipe is the parent's: close our copy, start afresh."""
        fd = self._fd
        self._reset()
        if fd is not None:
            try:
                os.close(fd)  # our descriptor only; the parent's stays open
            except OSError:
                pass

    @property
    def failed(self) -> bool:
        """True once this process has fallen back to its fallback."""
        return self._failed

    def close(self) -> None:
        """Close the stream; the listener sees EOF. Idempotent."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:  # pragma: no cover
                    pass

    # -- the hot path -----------------------------------------------------

    def send(self, event: Event) -> None:
        """Deliver *event* (a plain dict) or hand it to the fallback. Never raises."""
        with self._lock:
            if self._busy:  # re-entered from this very thread: after the outer one
                self._pending.append(event)
                return
            self._busy = True
            try:
                self._send(event)
                while self._pending:
                    self._send(self._pending.pop(0))
            finally:
                self._busy = False

    def _send(self, event: Event) -> None:
        self._seq += 1
        event["seq"] = self._seq
        if self._fd is None and not self._failed:
            try:
                self._connect()
            except Exception as exc:
                self._fail(f"cannot reach the listener at {self.address}: {exc!r}")
        fd = self._fd
        if fd is not None:
            try:
                self._write_all(fd, _encode(event))
                return
            except (BlockingIOError, TimeoutError):
                self._fail(f"the listener accepted nothing for {self.block_timeout} s")
            except OSError as exc:
                self._fail(f"the listener is gone ({exc.__class__.__name__})")
        if event.get("kind") in (_events.LOG, _events.SPAN, _events.LIFECYCLE):
            self.fallback_count += 1
            self.fallback(event)

    def _connect(self) -> None:
        fd = open_pipe(self.address, self.authkey, self.block_timeout)
        try:
            hello = self.hello()
            hello["seq"] = 0
            self._write_all(fd, _events.encode(hello))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _write_all(self, fd: int, data: bytes) -> None:
        """Write *data* whole, waiting at most ``block_timeout`` in total."""
        try:
            written = os.write(fd, data)  # nearly always the whole record
        except BlockingIOError:
            written = 0
        if written == len(data):
            return
        deadline = time.monotonic() + self.block_timeout
        view = memoryview(data)[written:]
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            poller.poll(remaining * 1000)
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                pass

    def _fail(self, why: str) -> None:
        """Give up on the listener for the rest of this process's life."""
        self._failed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass
        write_stderr(
            f"mptrace: warning: {why}; process {os.getpid()} now writes its "
            "records to its own stderr.\n"
        )


def _encode(event: Event) -> bytes:
    try:
        return _events.encode(event)
    except Exception as exc:  # the last safety net: values are plain already
        safe = {
            k: v if type(v) in (int, str) else safe_repr(v) for k, v in event.items()
        }
        safe["mptrace_error"] = f"event could not be encoded: {safe_repr(exc)}"
        return _events.encode(safe)


def write_stderr(text: str) -> None:
    """Write to fd 2 with ``os.write``: no buffer lock that a fork could leave held."""
    data = text.encode("utf-8", "backslashreplace")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:
        pass
