"""The door to the listener, both ends: an ``AF_UNIX`` connection, an HMAC
challenge each way (``multiprocessing.connection``), then the writer hands
the listener the read end of a new pipe (``SCM_RIGHTS``) and the socket is
closed. Records travel through the pipe (``_stream``)."""

from __future__ import annotations

import os
import socket
import struct
import sys
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

#: Seconds a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 5.0
#: Bytes a stream's pipe holds before a writer waits (Linux; elsewhere the default).
PIPE_SIZE = 256 * 1024


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


def challenge(
    sock: socket.socket,
    authkey: bytes,
    *,
    server: bool,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> None:
    """Both sides prove they hold *authkey*; raises ``AuthenticationError``."""
    set_recv_timeout(sock, timeout)
    set_send_timeout(sock, timeout)
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
        challenge(sock, authkey, server=False, timeout=min(timeout, HANDSHAKE_TIMEOUT))
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
