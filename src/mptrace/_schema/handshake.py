"""The door to the listener, both ends: an ``AF_UNIX`` connection, an HMAC
challenge each way (``multiprocessing.connection``), then the writer hands
the listener the read end of a new pipe (``SCM_RIGHTS``), the listener
answers ``k`` once it holds it, and the socket is closed. Records travel
through the pipe (``_participant.stream``).

Beside the pipe the writer may hand over an *acknowledgement slot*: a small
shared memory file (``memfd``) where a listener whose sinks are all files
writes the sequence number of the stream's last record that is in every file
(``acknowledge``). The writer reads it only once the listener is dead, to
know exactly which of its records to give again (``_participant.stream``).

A listener that cannot take a connection (out of file descriptors) says why
in a message the writer reads in place of a challenge or of the ``k``, so the
writer reports the real reason, not a failed authentication.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import sys
import threading
from collections import deque
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

#: Seconds a handshake may take before the connection is dropped (a writer
#: answers in microseconds; a peer that never does holds a thread this long).
HANDSHAKE_TIMEOUT = 1.0
#: Seconds a writer waits for the listener's side of the handshake: longer
#: than HANDSHAKE_TIMEOUT, so a listener busy with silent peers still gets to it.
WRITER_WAIT = 5.0
#: Bytes a stream's pipe holds before a writer waits (Linux; elsewhere the default).
PIPE_SIZE = 256 * 1024
#: How a listener's refusal begins; the reason follows.
BUSY = b"#mptrace-busy "
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)
#: The acknowledgement slot: the last durable sequence number (32 bits, as in
#: a frame's header) and whether a listener acknowledges at all (1).
ACK = struct.Struct("=QQ")
#: In the listener: its sinks all write files, so it acknowledges.
acknowledging = False
#: In the listener: each stream's slot (a descriptor), by the read end of its pipe.
slots: dict[int, int] = {}


class ListenerBusy(ConnectionRefusedError):
    """The listener said it cannot take this connection now, and why."""


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


def open_pipe(
    address: str, authkey: bytes, timeout: float, slot: int | None = None
) -> int:
    """Connect, authenticate and hand the listener a pipe; return its write end.

    *slot*, a descriptor of ``ack_slot``'s, goes with it. The write end is
    non-blocking: the caller bounds its waits itself.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except BlockingIOError:  # AF_UNIX says EAGAIN when the backlog is full
            raise ListenerBusy(
                "the listener's backlog of connections is full"
            ) from None
        sock.settimeout(None)
        try:
            challenge(sock, authkey, server=False, timeout=min(timeout, WRITER_WAIT))
        except (AuthenticationError, AssertionError) as exc:  # 3.11 asserts
            _raise_if_refused(str(exc).encode("utf-8", "replace"))
            raise
        read_end, write_end = os.pipe()
        try:
            _grow_pipe(write_end)
            set_send_timeout(sock, timeout)
            fds = [read_end] if slot is None else [read_end, slot]
            socket.send_fds(sock, [b"p"], fds)
            os.close(read_end)
            read_end = -1
            set_recv_timeout(sock, min(timeout, WRITER_WAIT))
            answer = sock.recv(512)
            if answer != b"k":
                _raise_if_refused(answer)
                raise ConnectionError(f"the listener answered {answer!r}, not k")
        except BaseException:
            os.close(write_end)
            raise
        finally:
            if read_end >= 0:
                os.close(read_end)
    finally:
        sock.close()
    os.set_blocking(write_end, False)
    return write_end


def _raise_if_refused(message: bytes) -> None:
    at = message.find(BUSY)
    if at >= 0:
        reason = message[at + len(BUSY) :].decode("utf-8", "replace")
        raise ListenerBusy(reason.split("'")[0].split('"')[0])


def refuse(sock: socket.socket, why: str) -> None:
    """Tell the writer why the listener cannot take it; needs no new descriptor."""
    message = BUSY + why.encode()
    try:
        sock.send(struct.pack("!i", len(message)) + message)
    except OSError:
        pass


def take_pipe(sock: socket.socket, authkey: bytes) -> int:
    """Authenticate the peer on *sock*, then take the pipe it hands over.

    Returns the read end (non-blocking). Raises ``AuthenticationError`` or
    ``OSError`` when the peer does not hold *authkey* or sends no pipe.
    """
    sock.setblocking(True)
    try:
        challenge(sock, authkey, server=True)
    except OSError as exc:
        if exc.errno in _OUT_OF_FDS:
            refuse(sock, "the listener is out of file descriptors")
        raise
    set_recv_timeout(sock, HANDSHAKE_TIMEOUT)
    _, fds, flags, _ = socket.recv_fds(sock, 16, 4)
    if len(fds) == 2:
        _keep_slot(fds[0], fds.pop())
    elif fds:
        release(fds[0])  # a number once another stream's
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        if flags & socket.MSG_CTRUNC:  # the kernel had no descriptor to give us
            refuse(sock, "the listener is out of file descriptors")
            raise OSError(errno.EMFILE, "no descriptor left for the pipe")
        refuse(sock, f"it expected one pipe, got {len(fds)}")
        raise ConnectionError(f"expected one pipe after the handshake, got {len(fds)}")
    os.set_blocking(fds[0], False)
    return fds[0]  # the caller confirms with confirm(sock) once it holds it


#: ``PF_EXITING`` in ``/proc/PID/stat``'s flags: set as a process begins to
#: exit, before its descriptors are closed.
_PF_EXITING = 0x4


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process that connected *sock*, where the system says it."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    pid = int(struct.unpack("3i", creds)[0])
    return pid if pid > 0 else None


def peer_ended(pid: int | None) -> bool:
    """True when the process *pid* has exited or is exiting.

    A child that is terminated or exits while it connects (a pool's worker
    at ``terminate()``) closes its end mid-handshake: that is a child that
    ended, not a peer without the key. When the listener sees the close, the
    kernel has marked the process as exiting already, so no wait is needed.
    """
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return True  # gone and reaped
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        state, flags = fields[0], int(fields[6])
    except (IndexError, ValueError):
        return False
    return state in (b"Z", b"X", b"x") or bool(flags & _PF_EXITING)


def why_refused(exc: Exception) -> str:
    """Why a handshake that raised *exc* failed, as the listener's warning says it."""
    if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
        return "was closed before its handshake finished"
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS:
        return "could not be taken: out of file descriptors"
    return f"failed authentication ({exc.__class__.__name__}: {exc})"


def ack_slot(seq: int) -> int:
    """A new acknowledgement slot saying *seq*, as a descriptor.

    Read and written with ``pread``/``pwrite``, not mapped: ``mmap`` keeps a
    duplicate descriptor, which a program that closes every descriptor may
    reuse, and which ``mmap`` would close when it goes. Raises ``OSError``
    where there is no ``memfd``.
    """
    fd = os.memfd_create("mptrace-ack", os.MFD_CLOEXEC)
    try:
        os.pwrite(fd, ACK.pack(seq & 0xFFFFFFFF, 0), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_slot(fd: int) -> tuple[int, int]:
    """(the last sequence number acknowledged, 1 if the listener acknowledges)."""
    data = os.pread(fd, ACK.size, 0)
    return ACK.unpack(data) if len(data) == ACK.size else (0, 0)


def _keep_slot(pipe: int, fd: int) -> None:
    """Keep a writer's slot, if this listener acknowledges and it is one."""
    release(pipe)
    try:
        st = os.fstat(fd)
        if acknowledging and stat.S_ISREG(st.st_mode) and st.st_size == ACK.size:
            os.pwrite(fd, ACK.pack(read_slot(fd)[0], 1), 0)
            slots[pipe] = fd
            return
    except OSError:  # not a slot: the stream goes unacknowledged
        pass
    os.close(fd)


def acknowledge(pipe: int, seq: int) -> None:
    """Say in the stream's slot that its records up to *seq* are in every file."""
    fd = slots.get(pipe)
    if fd is not None:
        try:
            os.pwrite(fd, ACK.pack(seq, 1), 0)
        except OSError:  # pragma: no cover - a memfd takes 16 bytes
            pass


def release(pipe: int) -> None:
    """The stream of *pipe* ended: close its slot."""
    fd = slots.pop(pipe, None)
    if fd is not None:
        os.close(fd)


def confirm(sock: socket.socket) -> None:
    """Tell the writer its pipe is in the listener's hands (the ``k``)."""
    try:
        sock.send(b"k")
    except OSError:  # the writer gave up; its pipe says the rest
        pass


def _grow_pipe(fd: int) -> None:
    if sys.platform == "linux":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's pipe budget: keep the default
            pass


class Waiting:
    """Connections waiting for a handshake thread: the newest is taken first,
    and when *cap* are waiting the oldest is pushed out. A peer that connects
    and never speaks costs one thread for HANDSHAKE_TIMEOUT at most, and a
    flood of them cannot keep a child that connects now waiting behind it."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._items: deque[socket.socket] = deque()
        self._ready = threading.Condition()
        self._stopped = False

    def put(self, sock: socket.socket) -> socket.socket | None:
        """Queue *sock*; return the connection pushed out, if any."""
        with self._ready:
            self._items.append(sock)
            oldest = self._items.popleft() if len(self._items) > self.cap else None
            self._ready.notify()
        return oldest

    def get(self) -> socket.socket | None:
        """The newest waiting connection; None once stopped."""
        with self._ready:
            while not self._items and not self._stopped:
                self._ready.wait()
            return self._items.pop() if self._items else None

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            for sock in self._items:
                sock.close()
            self._items.clear()
            self._ready.notify_all()
