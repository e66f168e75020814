"""The funnel's wire format, shared by both ends of a stream.

Every participating process owns one ``AF_UNIX`` stream to the listener::

    connect ──▶ HMAC challenge both ways (multiprocessing.connection)
            ──▶ frame, frame, frame, ...            (this module)
            ──▶ EOF: the process is gone, or it closed its stream

A frame is a 4-byte big-endian length followed by that many bytes of a pickled
*plain* dict (str, int, float, bool, None, lists and dicts of those). Nothing
else crosses: no ``LogRecord``, no span object, no traceback.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

HEADER = struct.Struct("!I")
PROTOCOL = pickle.HIGHEST_PROTOCOL
#: A frame larger than this is refused by the listener (a corrupt stream).
MAX_FRAME = 64 * 1024 * 1024

#: Seconds a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 5.0


def encode(event: dict) -> bytes:  # type: ignore[type-arg]
    """Return *event* as one frame, header included."""
    body = pickle.dumps(event, PROTOCOL)
    return HEADER.pack(len(body)) + body


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each blocking send in the kernel (``SO_SNDTIMEO``).

    A timeout on the Python socket object would poll before every send; the
    kernel option costs nothing on the hot path.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(seconds))


def set_recv_timeout(sock: socket.socket, seconds: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))


def _handshake_connection(sock: socket.socket) -> Connection:
    # A duplicate descriptor: closing the Connection leaves *sock* open.
    return Connection(os.dup(sock.fileno()))


def client_handshake(sock: socket.socket, authkey: bytes) -> None:
    """Prove we hold *authkey* and check that the listener does too."""
    set_recv_timeout(sock, HANDSHAKE_TIMEOUT)
    conn = _handshake_connection(sock)
    try:
        answer_challenge(conn, authkey)
        deliver_challenge(conn, authkey)
    finally:
        conn.close()
    set_recv_timeout(sock, 0)


def server_handshake(sock: socket.socket, authkey: bytes) -> None:
    """Raise ``AuthenticationError`` (or ``OSError``) unless the peer holds *authkey*."""
    set_recv_timeout(sock, HANDSHAKE_TIMEOUT)
    set_send_timeout(sock, HANDSHAKE_TIMEOUT)
    conn = _handshake_connection(sock)
    try:
        deliver_challenge(conn, authkey)
        answer_challenge(conn, authkey)
    finally:
        conn.close()
    set_recv_timeout(sock, 0)
    set_send_timeout(sock, 0)


class FrameReader:
    """Splits a byte stream into frames; keeps the tail of an unfinished one."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[memoryview]:
        """Add *data*; return the bodies of every frame now complete.

        Raises ``ValueError`` on a length that no writer would send.
        """
        buf = self._buf + data if self._buf else data
        view = memoryview(buf)
        frames = []
        pos = 0
        end = len(buf)
        size_of = HEADER.unpack_from
        while end - pos >= 4:
            (size,) = size_of(buf, pos)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            stop = pos + 4 + size
            if stop > end:
                break
            frames.append(view[pos + 4 : stop])
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame: a writer that died mid-record."""
        return len(self._buf)
