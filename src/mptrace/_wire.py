"""The funnel's wire format, shared by both ends of a stream.

Every participating process owns one stream to the listener::

    connect to the AF_UNIX socket ──▶ HMAC challenge both ways
        (multiprocessing.connection) ──▶ hand the listener the read end of a
        new pipe (SCM_RIGHTS) ──▶ close the socket
    pipe: frame, frame, frame, ... ──▶ EOF: the process is gone

The socket is only the door: records travel through the pipe because a pipe
write costs a quarter of an ``AF_UNIX`` send on Linux (measured ~1 µs against
~4.5 µs for a 150-byte record), and that call is on every logging call's path.

A frame is a 4-byte big-endian length, then that many bytes: a 1-byte kind
and a 4-byte sequence number, then the event as one JSON object in UTF-8,
exactly the line the JSON-lines exporter writes. Only plain data crosses (no
``LogRecord``, no span object, no traceback) and nothing from a peer is ever
unpickled. The child encodes, so the one listener, which serves every process,
only copies bytes to a JSON-lines file; children encode in parallel.
"""

from __future__ import annotations

import json
import json.encoder
import os
import socket
import struct
import sys
from typing import Any
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

#: Keys mptrace writes on every event it sends.
EVENT_KEYS = frozenset(("kind", "ts", "level", "logger", "event", "pid", "ppid", "process", "seq"))
#: Those, and the structure of spans and lifecycle records: what mptrace
#: writes itself, as opposed to fields, attributes and values from the program.
STRUCTURE_KEYS = EVENT_KEYS | frozenset(
    (
        "name", "trace_id", "span_id", "parent_span_id", "span_kind", "start_ns",
        "end_ns", "status", "status_message", "scope", "resource", "transition",
        "target_pid", "target_name", "start_method",
    )
)

HEADER = struct.Struct("!I")
PREFIX = struct.Struct("!BI")  # kind, sequence number
KINDS = ("other", "log", "span", "lifecycle", "hello", "shutdown")
KIND_CODES = {name: code for code, name in enumerate(KINDS)}
_FRAME_HEAD = struct.Struct("!IBI")  # HEADER and PREFIX in one
#: A frame larger than this is refused by the listener (a corrupt stream).
MAX_FRAME = 64 * 1024 * 1024

#: Seconds a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 5.0
#: Bytes a stream's pipe holds before a writer waits (Linux; elsewhere the default).
PIPE_SIZE = 256 * 1024


def _make_json_encoder() -> Any:
    # json.dumps builds its C encoder anew on every call; building it once
    # halves the cost of the one encoding on every logging call's path.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, check_circular=False, default=repr).encode
    encoder = make(
        None, repr, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
    )

    def encode(obj: object) -> str:
        chunks = encoder(obj, 0)
        return chunks if type(chunks) is str else "".join(chunks)

    return encode


_json = _make_json_encoder()


def to_json(event: dict) -> bytes:  # type: ignore[type-arg]
    """*event* as UTF-8 JSON; lone surrogates become ``\\udcXX`` escapes.

    Those escapes are JSON's own, so reading the line back gives the same
    string, and the bytes are always valid UTF-8.
    """
    text = _json(event)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def encode(event: dict) -> bytes:  # type: ignore[type-arg]
    """Return *event* as one frame, header included; ``event["seq"]`` is an int."""
    body = to_json(event)
    return (
        _FRAME_HEAD.pack(
            len(body) + 5,
            KIND_CODES.get(event.get("kind"), 0),  # type: ignore[arg-type]
            event.get("seq", 0) & 0xFFFFFFFF,
        )
        + body
    )


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


def open_stream(address: str, authkey: bytes, timeout: float) -> int:
    """Connect, authenticate and hand the listener a pipe; return its write end.

    The write end is non-blocking: the caller bounds its waits itself.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.settimeout(None)
        client_handshake(sock, authkey)
        read_end, write_end = os.pipe()
        try:
            if sys.platform == "linux":
                try:
                    import fcntl

                    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:  # over the user's pipe budget: keep the default
                    pass
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


def accept_stream(sock: socket.socket, authkey: bytes) -> int:
    """Authenticate the peer on *sock*, then take the pipe it hands over.

    Returns the read end (non-blocking). Raises ``AuthenticationError`` or
    ``OSError`` when the peer does not hold *authkey* or sends no pipe.
    """
    server_handshake(sock, authkey)
    set_recv_timeout(sock, HANDSHAKE_TIMEOUT)
    _, fds, _, _ = socket.recv_fds(sock, 16, 4)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"expected one pipe after the handshake, got {len(fds)}")
    os.set_blocking(fds[0], False)
    return fds[0]


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
        """Add *data*; return every frame now complete (prefix and JSON body).

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
