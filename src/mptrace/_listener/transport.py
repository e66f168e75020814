"""Transport, listener side: who may write, and the frames they write.

::

    listening socket ──accept──▶ handshake pool (HANDSHAKERS threads, newest
        connection first; past HANDSHAKE_BACKLOG waiting, the oldest is refused)
        ──ok, a pipe──▶ selector ──readable──▶ FrameReader ──▶ frames
    a frame's sequence number skips ──▶ the gap is counted as lost
    EOF ──▶ an unfinished frame is counted as lost; the router is told
    owner gone (pidfd, or getppid) ──▶ drain what is there, stop
    owner's shutdown ──▶ drain; streams still open (a manager's server, a
        reusable executor's workers) ──▶ the owner goes on, read them until
        the last one closes, stop

Nothing here looks inside a frame's JSON but a stream's first (``hello``:
whose stream it is): the router gets each frame's kind, flags and body
(``_schema.events`` defines them).
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import socket
import threading
import time
from typing import Any, Protocol

from mptrace._listener import problems as _problems
from mptrace._listener.frames import FrameReader
from mptrace._schema import events as _events
from mptrace._schema.handshake import (
    Waiting,
    confirm,
    peer_ended,
    peer_pid,
    refuse,
    take_pipe,
    why_refused,
)

READ_SIZE = 256 * 1024
#: Threads that run handshakes, and connections that may wait for one.
HANDSHAKERS = 4
HANDSHAKE_BACKLOG = 64
#: After the owner asked to stop, a record cut mid-write waits this long for its rest.
DRAIN_IDLE = 0.25
#: While draining, handshakes are waited for this long at most: a child that
#: connects as the session ends gets in, a silent peer does not hold it up.
HANDSHAKE_GRACE = 1.0
#: After the owner died: stop draining after this long, whatever is left.
ORPHAN_DRAIN = 1.0
#: When a read brings less than this, let records pile up for BATCH_PAUSE s
#: before the next: far fewer wake-ups on both sides, for 1 ms of latency.
SMALL_READ = 16 * 1024
BATCH_PAUSE = 0.001
#: Seconds the loop waits for input while a batch waits to be flushed (or
#: streams drain), and otherwise.
FLUSH_TICK = 0.025
IDLE_TICK = 0.5
#: Seconds the listener stops accepting when it is out of descriptors.
ACCEPT_BACKOFF = 0.1

_ACCEPT, _WAKE, _OWNER, _PEER = range(4)
_unpack_prefix = _events.PREFIX.unpack_from
_PREFIX_SIZE = _events.PREFIX.size


class Peer:
    """One participating process's stream, as the listener knows it."""

    __slots__ = ("fd", "last_seq", "pid", "ppid", "process", "reader")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reader = FrameReader()
        self.pid: Any = "?"
        self.ppid: Any = None
        self.process = "?"
        self.last_seq = 0


Frame = tuple[int, int, memoryview]  # kind code, flags, JSON body


class Router(Protocol):
    """What the transport hands its frames to (``router.Router``)."""

    def on_frames(self, peer: Peer, frames: list[Frame]) -> None: ...
    def on_end(self, peer: Peer) -> None: ...
    def on_idle(self) -> None: ...
    def on_tick(self) -> None: ...
    def settle(self) -> None: ...
    @property
    def waiting_to_flush(self) -> bool: ...
    def report(self, level: str, message: str, **fields: Any) -> None: ...


class Transport:
    """Accepts authenticated streams and reads their frames into a router."""

    def __init__(self, lsock: socket.socket, authkey: bytes, owner_pid: int) -> None:
        self.lsock = lsock
        self.authkey = authkey
        self.owner_pid = owner_pid
        self.router: Router | None = None
        self.sel = selectors.DefaultSelector()
        self.peers: dict[int, Peer] = {}
        self.total_lost = 0
        self.refused = 0
        self.draining = False
        self.lingering = False  # the owner went on; others still write
        self.deadline = float("inf")
        self.handshakes_until = 0.0
        self.last_data = time.monotonic()
        self.owner_gone = False
        self._owner_fd: int | None = None
        self._accepting_again = 0.0
        self._said: set[str] = set()
        self._incoming = Waiting(HANDSHAKE_BACKLOG)
        self._handshaken: queue.SimpleQueue[int | str | None] = queue.SimpleQueue()
        self.handshakes_running = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._workers = [
            threading.Thread(target=self._handshakes, daemon=True, name="mptrace-auth")
            for _ in range(HANDSHAKERS)
        ]
        for worker in self._workers:
            worker.start()

    # -- connections ---------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: back off, say so once
                self._say_once(
                    "accept",
                    f"accepting a connection failed ({exc.strerror or exc}); "
                    "waiting a moment before accepting more",
                )
                self.sel.unregister(self.lsock)
                self._accepting_again = time.monotonic() + ACCEPT_BACKOFF
                return
            oldest = self._incoming.put(sock)
            self.handshakes_running += 1
            if oldest is not None:  # a flood: the longest waiting goes
                refuse(oldest, "too many connections are waiting for a handshake")
                oldest.close()
                self.handshakes_running -= 1
                self._refuse("waited while too many others came for a handshake")

    def _handshakes(self) -> None:
        while True:
            sock = self._incoming.get()
            if sock is None:
                return
            pid = peer_pid(sock)
            try:
                result: int | str | None = take_pipe(sock, self.authkey)
            except Exception as exc:
                # A child terminated or exiting while it connected (a pool's
                # worker at terminate()) is a child that ended: no news.
                result = None if peer_ended(pid) else why_refused(exc)
            # Queued before the writer hears 'k': a flush the writer asks for
            # next finds this stream.
            self._handshaken.put(result)
            try:
                self._wake_w.send(b"\0")
            except OSError:  # pragma: no cover - shutting down
                pass
            if isinstance(result, int):
                confirm(sock)
            sock.close()

    def _take_handshaken(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                item = self._handshaken.get_nowait()
            except queue.Empty:
                return
            self.handshakes_running -= 1
            if item is None:
                continue
            if isinstance(item, str):
                self._refuse(item)
                continue
            self.peers[item] = Peer(item)
            self.sel.register(item, selectors.EVENT_READ, _PEER)

    def _refuse(self, why: str) -> None:
        self.refused += 1
        self._say_once("refused", f"refused a connection that {why}")

    def _say_once(self, key: str, message: str) -> None:
        """One warning per kind of trouble; the rest are counted."""
        if key not in self._said and self.router is not None:
            self._said.add(key)
            self.router.report(
                "warning", message + "; further ones are counted, not logged"
            )

    # -- reading -------------------------------------------------------------

    def _read(self, fd: int) -> int:
        peer = self.peers.get(fd)
        if peer is None:
            return 0
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            data = b""
        if not data:
            self._close(peer)
            return 0
        self.last_data = time.monotonic()
        try:
            bodies = peer.reader.feed(data)
        except ValueError as exc:
            self.lost(peer, 1, f"its stream is corrupt ({exc}); closing it")
            self._close(peer, corrupt=True)
            return 0
        frames: list[Frame] = []
        for body in bodies:
            if len(body) < _PREFIX_SIZE:
                self.lost(peer, 1, "a frame was too short to hold a record")
                continue
            kind, flags, seq = _unpack_prefix(body)
            if kind == _HELLO:
                peer.last_seq = seq
                _introduce(peer, body[_PREFIX_SIZE:])
                continue
            else:
                gap = seq - peer.last_seq - 1
                peer.last_seq = seq
                if gap > 0:
                    self.lost(peer, gap, "a gap in its sequence numbers")
            frames.append((kind, flags, body[_PREFIX_SIZE:]))
        if frames and self.router is not None:
            self.router.on_frames(peer, frames)
        return len(data)

    def _close(self, peer: Peer, corrupt: bool = False) -> None:
        self.sel.unregister(peer.fd)
        del self.peers[peer.fd]
        os.close(peer.fd)
        if peer.reader.pending and not corrupt:
            self.lost(peer, 1, "its last record was cut off mid-write")
        if self.router is not None:
            self.router.on_end(peer)

    def lost(self, peer: Peer, count: int, why: str) -> None:
        """Count *count* records of *peer* as lost, and say so."""
        self.total_lost += count
        if self.router is not None:
            noun = "record" if count == 1 else "records"
            self.router.report(
                "warning",
                f"{count} {noun} lost from pid {peer.pid} ({peer.process}): {why}",
                lost=count,
                lost_pid=peer.pid,
            )

    # -- the loop ------------------------------------------------------------

    def _watch(self) -> None:
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, _ACCEPT)
        self.sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        try:
            self._owner_fd = os.pidfd_open(self.owner_pid)
        except (AttributeError, OSError):
            self._owner_fd = None  # polled through getppid instead
        if self._owner_fd is not None:
            self.sel.register(self._owner_fd, selectors.EVENT_READ, _OWNER)

    def _owner_alive(self) -> bool:
        if self._owner_fd is not None:
            return not self.owner_gone
        return os.getppid() == self.owner_pid

    def begin_drain(self, seconds: float) -> None:
        """Read every stream until it ends, or is idle, for *seconds* at most."""
        now = time.monotonic()
        self.deadline = min(self.deadline, now + seconds)
        if not self.draining:
            self.handshakes_until = now + HANDSHAKE_GRACE
        self.draining = True

    def _done_draining(self, idle: bool) -> bool:
        now = time.monotonic()
        if now >= self.deadline:
            return True
        if self.handshakes_running and now < self.handshakes_until:
            return False  # a child connecting now; a silent peer waits in vain
        if not self.others_open():
            return True
        # What was sent before the owner's shutdown frame is in a pipe already
        # (a send writes before it returns): one pass reading every stream to
        # empty has it all. A record cut mid-write waits for its rest.
        self.read_available(self.deadline - now)
        if not any(p.reader.pending for p in self.peers.values()):
            return True
        return idle and now - self.last_data >= DRAIN_IDLE

    def others_open(self) -> bool:
        """A stream of a process other than the owner is still open."""
        return any(p.pid != self.owner_pid for p in self.peers.values())

    def read_available(self, seconds: float) -> None:
        """Read what every stream holds now, for *seconds* at most (a flush)."""
        deadline = time.monotonic() + seconds
        self._take_handshaken()
        for fd in list(self.peers):
            while fd in self.peers and time.monotonic() < deadline and self._read(fd):
                pass

    def run(self, router: Router) -> None:
        self.router = router
        self._watch()
        select = self.sel.select
        while True:
            soon = (
                (self.draining and not self.lingering)
                or router.waiting_to_flush
                or self._accepting_again
            )
            ready = select(FLUSH_TICK if soon else IDLE_TICK)
            most = 0
            for key, _ in ready:
                what = key.data
                if what == _PEER:
                    most = max(most, self._read(key.fd))
                elif what == _ACCEPT:
                    self._accept()
                elif what == _WAKE:
                    self._take_handshaken()
                elif what == _OWNER:
                    self.sel.unregister(key.fileobj)
                    self.owner_gone = True
            if self._accepting_again and time.monotonic() >= self._accepting_again:
                self._accepting_again = 0.0
                self.sel.register(self.lsock, selectors.EVENT_READ, _ACCEPT)
            router.on_tick()
            if not ready:
                router.on_idle()
            if not self.draining and not self._owner_alive():
                self.owner_gone = True
                self.begin_drain(ORPHAN_DRAIN)
            if self.lingering:
                if not self.others_open():
                    break
            elif self.draining and self._done_draining(idle=not ready):
                if self.owner_gone or not self.others_open():
                    break
                # A manager's server, a pool or executor left open, a daemon:
                # the owner need not wait for them, and what they log until
                # they end still arrives.
                self.lingering = True
                router.settle()
            if 0 < most < SMALL_READ and not self.draining:
                time.sleep(BATCH_PAUSE)

    def close(self) -> None:
        """Count what was still being written; stop the handshake threads."""
        for peer in list(self.peers.values()):
            if peer.pid != self.owner_pid and peer.reader.pending:
                self.lost(
                    peer, 1, "its last record was still being written at shutdown"
                )
        self._incoming.stop()


_HELLO = _events.KIND_CODES[_events.HELLO]


def _introduce(peer: Peer, body: memoryview) -> None:
    """A stream's first frame says whose it is."""
    try:
        hello = json.loads(bytes(body))
    except ValueError:
        return
    if type(hello) is dict:
        _problems.note_totals(hello)
        peer.pid = hello.get("pid", "?")
        peer.ppid = hello.get("ppid")
        peer.process = hello.get("process", "?")
