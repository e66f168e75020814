"""Transport, sending side: this process's own pipe to the listener.

Every participating process owns one stream::

    connect and authenticate (``_schema.handshake``) ──▶ hand over a pipe's read end
    pipe: hello, frame, frame, ... ──▶ EOF: the process is gone

The socket is only the door: records travel through the pipe because a pipe
write costs a quarter of an ``AF_UNIX`` send on Linux (measured ~1 µs against
~4.5 µs for a 150-byte record), and that call is on every logging call's path.

``Stream.send`` numbers an event, encodes it (``_schema.events.encode``) and writes
it before it returns, so a process that then calls ``os._exit``, is
SIGKILLed or segfaults loses nothing it already sent. No lock is shared with
another process. When the listener is gone (or stops reading for longer than
``block_timeout`` seconds), the stream says so once on stderr and hands
later events to its *fallback* (the participant renders them on stderr)
until it can reach the listener again: nothing is dropped and nothing blocks.
What a dead listener had not yet put in its files is given again, to the
listener its owner started in its place (``revive``), or else to the
fallback: the listener acknowledges, in a slot shared with the writer
(``_schema.handshake``), the stream's last record that is in every file, and
the stream keeps its last records until then (``kept``), within a bound past
which they are counted, exactly, and said. A listener with sinks other than
files does not acknowledge; what it never read from the pipe is counted.
A program that restored SIGPIPE's default action does not die of a dead
listener: the write is made with SIGPIPE blocked. A program that closed the
stream's descriptor (and maybe opened a file under its number) gets no byte
of it: the stream checks the descriptor before each write (``pipe``) and
connects anew.

A send that starts while this thread is already inside ``send`` (a signal
handler that logs, a ``__repr__`` that logs while its record is encoded) is
queued and written right after the outer one: it never waits on a lock its
own thread holds.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: no enum wrapping
import os
import select
import threading
import time
from collections.abc import Callable

from mptrace._participant import pipe as _pipe
from mptrace._participant import revive as _revive
from mptrace._participant.framing import encode as _encode
from mptrace._participant.kept import Kept
from mptrace._participant.revive import write_stderr
from mptrace._schema import events as _events
from mptrace._schema.events import Event
from mptrace._schema.handshake import ListenerBusy, ack_slot, open_pipe

#: After the listener was lost, the first try to reach it again waits this
#: long; each failed try doubles the wait, up to RETRY_MAX.
RETRY_AFTER = 0.5
RETRY_MAX = 30.0
#: How long a first connection may wait for a listener that says it is busy
#: (a flood of connections, no descriptor to spare) before falling back.
BUSY_WAIT = 2.0
#: How long a writer whose listener died waits for the one its owner starts
#: (``_session.restart``): a fresh interpreter takes ~0.1 s, more when busy.
REVIVE_WAIT = 5.0

__all__ = ["Stream", "write_stderr"]

_SIGPIPE = getattr(_signal, "SIGPIPE", None)
_SIG_IGN = _signal.SIG_IGN


# -- the stream -----------------------------------------------------------------


class Stream:
    """This process's connection to the listener at *address*.

    *hello* is the first event of every connection (who is writing);
    *fallback* takes each event the listener could not. After the listener
    is lost (gone, or stalled past *block_timeout*) the stream tries to reach
    it again, at the next event once RETRY_AFTER seconds have passed (then
    twice as long after each failed try), so a listener that comes back gets
    its streams back.
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
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.RLock()
        self._busy = False  # this thread is inside send (under _lock)
        self._pending: list[Event] = []
        self._fd: int | None = None
        self._ours: Callable[[], bool] = _pipe.never  # is _fd still our pipe?
        self._failed = False
        self._retry_at = 0.0
        self._retry_wait = RETRY_AFTER
        self._seq = 0
        self.fallback_count = 0  # events handed to the fallback
        self.lost_count = 0  # events written to a pipe the listener never read
        self.closed_count = 0  # times the program closed the stream's descriptor
        self._written = 0  # bytes written into the current pipe
        self._kept = Kept()  # the last records, until the listener wrote them
        self._slot: _pipe.Owned | None = None  # the listener's acknowledgement
        self.again_count = 0  # records given to the fallback after the listener died
        self.given_again = 0  # records given to a listener that took over
        #: In the owner: starts a new listener for a dead one (``_session.restart``).
        self.on_death: Callable[[], object] | None = None

    def after_fork_in_child(self) -> None:
        """The inherited pipe is the parent's: close our copy, start afresh."""
        fd, ours, slot = self._fd, self._ours, self._slot
        self._reset()
        if slot is not None:
            slot.close()
        if fd is not None:
            _pipe.close(fd, ours)  # our descriptor only; the parent's stays open

    @property
    def failed(self) -> bool:
        """True while this process's events go to its fallback."""
        return self._failed

    def close(self) -> None:
        """Close the stream; the listener sees EOF. Idempotent.

        When the listener died, what it had not written is given again or
        counted (``_listener_died``).
        """
        with self._lock:
            fd = self._fd
            if fd is not None and self._ours() and _pipe.reader_gone(fd):
                _revive.listener_died(self, fd, self._seq, "at exit")
            fd, self._fd = self._fd, None  # a listener that took over, if any
            if fd is not None:
                _pipe.close(fd, self._ours)
            self._drop_slot()

    def report(self) -> None:
        """Say on stderr what of this process's events the exporters missed."""
        said = []
        if self.fallback_count:
            n = self.fallback_count
            said.append(f"{n} event{'' if n == 1 else 's'} went to its stderr")
        if self.again_count:
            said.append(
                f"{self.again_count} a dying listener had not written went to "
                "its stderr after it died"
            )
        if self.lost_count:
            said.append(f"{self.lost_count} were lost with a listener that died")
        if said:
            write_stderr(
                f"mptrace: of this process's events, {' and '.join(said)}; "
                "the exporters did not get them.\n"
            )

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
        seq = event["seq"] = self._seq
        if self._fd is None:
            self._reach(event.get("kind") in _CONTROL)
        elif not self._ours():  # one fcntl: see ``pipe`` for why and its price
            self._closed_by_program()
        fd = self._fd
        if fd is not None:
            data = _encode(event)
            try:
                if _getsignal(_SIGPIPE) == _SIG_IGN:
                    self._write_all(fd, data)
                else:
                    self._write_masked(fd, data)
                self._written += len(data)
                self._kept.keep(seq, data, self._written)
                return
            except (BlockingIOError, TimeoutError):
                self._fail(f"the listener accepted nothing for {self.block_timeout} s")
            except OSError as exc:
                if isinstance(exc, BrokenPipeError) and self._revive(seq, data):
                    return
                self._fail(f"the listener is gone ({exc.__class__.__name__})")
        if event.get("kind") in _RECORDS:
            self.fallback_count += 1
            self.fallback(event)

    def _revive(self, seq: int, data: bytes) -> bool:
        """The listener died: give what it had not written, then record
        *seq*, to one that took over. False when none did."""
        fd = self._fd
        if fd is None or not _revive.listener_died(
            self, fd, seq - 1, "when it was found gone"
        ):
            return False
        fd = self._fd
        try:
            assert fd is not None
            self._write_any(fd, data)
        except OSError:
            return False
        self._written += len(data)
        self._kept.keep(seq, data, self._written)
        return True

    def _write_any(self, fd: int, data: bytes) -> None:
        if _getsignal(_SIGPIPE) == _SIG_IGN:
            self._write_all(fd, data)
        else:
            self._write_masked(fd, data)

    def _reach(self, now: bool) -> None:
        """Connect, or after a failure try again when it is time (or *now*)."""
        if self._failed and not now and time.monotonic() < self._retry_at:
            return
        try:
            self._connect(patient=not self._failed)
        except Exception as exc:
            if not self._failed:
                self._fail(f"cannot reach the listener at {self.address}: {exc!r}")
            else:
                self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
                self._retry_at = time.monotonic() + self._retry_wait
            return
        if self._failed:
            self._failed = False
            self._retry_wait = RETRY_AFTER
            write_stderr(
                f"mptrace: the listener is back; process {os.getpid()} sends to "
                f"it again ({self.fallback_count} events went to its stderr).\n"
            )

    def _closed_by_program(self) -> None:
        """The program closed our descriptor (daemonizing code closes them
        all) and may have opened a file of its own under its number: forget
        it, neither writing nor closing it, and connect anew at once. What
        the pipe held before stays readable to the listener."""
        fd, self._fd = self._fd, None
        self.closed_count += 1
        if self.closed_count == 1:
            write_stderr(
                f"mptrace: process {os.getpid()} found its stream's descriptor "
                f"{fd} closed by the program; it connects to the listener anew "
                "and never writes to that descriptor again.\n"
            )
        self._reach(True)

    def _connect(self, after: int | None = None, patient: bool = False) -> None:
        """Connect; the next frame written is record *after* + 1 (by default
        the one being sent). A *patient* connection waits, a little, for a
        listener being started at the address (``REVIVE_WAIT``)."""
        after = self._seq - 1 if after is None else after
        wait = REVIVE_WAIT if patient else BUSY_WAIT
        deadline = time.monotonic() + min(self.block_timeout, wait)
        self._drop_slot()
        try:  # frames before this stream's hello are not its to acknowledge
            slot = self._slot = _pipe.Owned(ack_slot(after))
        except OSError:  # no memfd here: what a dying listener never read is counted
            slot = None
        try:
            fd = self._open(None if slot is None else slot.fd, deadline, patient)
        except BaseException:
            self._drop_slot()
            raise
        try:
            hello = _revive.told(self, self.hello())
            hello["seq"] = after  # the next frame follows without a gap
            self._write_all(fd, _events.encode(hello))
        except BaseException:
            os.close(fd)
            self._drop_slot()
            raise
        self._ours = _pipe.claim(fd)
        self._fd = fd
        self._written = 0

    def _drop_slot(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.close()

    def _open(self, slot_fd: int | None, deadline: float, patient: bool) -> int:
        pause = 0.01
        while True:
            try:
                return open_pipe(
                    self.address, self.authkey, self.block_timeout, slot_fd
                )
            except (ListenerBusy, ConnectionRefusedError) as exc:
                # A flood, no descriptors, or (refused) no listener yet at
                # an address still there: wait a little, within bounds. A
                # missing address is final: the owner gave up or is gone.
                late = time.monotonic() + pause > deadline
                if late or not (patient or isinstance(exc, ListenerBusy)):
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.25)

    def _write_masked(self, fd: int, data: bytes) -> None:
        """Write with SIGPIPE blocked: a program that restored SIGPIPE's default
        (command-line tools do) must not die because the listener did."""
        old = _sigmask(_signal.SIG_BLOCK, _PIPE_SET)
        try:
            self._write_all(fd, data)
        except BrokenPipeError:
            if _take_signal is not None:  # ours: take it before unblocking
                _take_signal(_PIPE_SET, 0)
            raise
        finally:
            _sigmask(_signal.SIG_SETMASK, old)

    def _write_all(self, fd: int, data: bytes) -> None:
        """Write *data* whole, waiting at most ``block_timeout`` in total."""
        try:
            written = os.write(fd, data)  # nearly always the whole record
        except BlockingIOError:
            written = 0
        if written == len(data):
            return
        deadline = time.monotonic() + min(self.block_timeout, BUSY_WAIT)
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
        """Hand events to the fallback until the listener can be reached again."""
        first = not self._failed
        self._failed = True
        self._retry_at = time.monotonic() + self._retry_wait
        fd, self._fd = self._fd, None
        self._drop_slot()
        if fd is not None:
            _pipe.close(fd, self._ours)  # never the program's descriptor
        if first:
            write_stderr(
                f"mptrace: warning: {why}; process {os.getpid()} writes its "
                "records to its own stderr until it can reach the listener again.\n"
            )


_RECORDS = _revive.RECORDS
#: Events that try to reach a lost listener at once: the end of a session,
#: a flush someone waits for.
_CONTROL = frozenset((_events.SHUTDOWN, _events.FLUSH))
_getsignal = _signal.getsignal if _SIGPIPE is not None else (lambda _s: _SIG_IGN)
_sigmask = _signal.pthread_sigmask
_take_signal = getattr(_signal, "sigtimedwait", None)  # not on macOS
_PIPE_SET = {_SIGPIPE} if _SIGPIPE is not None else set()
