"""When the listener dies: what it had not written goes to the one that took over.

The session's owner starts a new listener at the same address when the old
one dies (``_session.restart``). A writer that finds its pipe's reader gone
works out which of its records the dead listener had not made durable: with
files only, those after the last one acknowledged in the slot
(``_schema.handshake``); otherwise those still unread in the pipe. It then
connects again, within a bounded wait (the new listener takes a fresh
interpreter's start), says in its ``hello`` that the next frame follows the
last record made durable, and writes the kept frames (``kept``) again, as
they were, before anything new: the new listener sees one stream with no
gap, and writes them in their order. Records past what was kept are counted
and said. When no listener takes over in time (the owner is gone, or gave
up after its restarts), the records go to the fallback on stderr, as they
did before there were restarts.

Every count travels in the next ``hello`` as this process's total so far
(``again``, ``stderr``, ``lost``); the listener that took over keeps each
process's latest and says their sum once, at the end of the session.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mptrace._participant import pipe as _pipe
from mptrace._participant.framing import decode as _decode
from mptrace._participant.kept import KEEP_BYTES
from mptrace._schema import events as _events
from mptrace._schema.events import Event
from mptrace._schema.handshake import read_slot

if TYPE_CHECKING:
    from mptrace._participant.stream import Stream

RECORDS = frozenset((_events.LOG, _events.SPAN, _events.LIFECYCLE))


def listener_died(stream: Stream, fd: int, last: int, when: str) -> bool:
    """The reader of pipe *fd* died after records up to *last* were sent.

    Closes *fd* (never the program's descriptor). True when a listener took
    over and has every record the dead one had not written: the stream is
    connected to it. Otherwise those records went to the fallback, or were
    counted, and the stream is not connected.
    """
    slot = stream._slot
    acked, on = read_slot(slot.fd) if slot is not None and slot.ours() else (0, 0)
    unread = 0 if on == 1 else _pipe.unread_bytes(fd)
    if on == 1:
        unwritten = (last - acked) & 0xFFFFFFFF
    elif unread > 0:  # records ending past the listener's last read
        unwritten = stream._kept.unread(last, stream._written - unread)
    else:
        unwritten = 0
    stream._fd = None
    _pipe.close(fd, stream._ours)
    stream._drop_slot()
    frames, lost = stream._kept.since(last - unwritten, last)
    coming = True  # a child waits a little for the listener its owner starts
    if stream.on_death is not None:  # the owner: start a new listener now
        coming = bool(stream.on_death())
    # Counted before the new hello, which tells them to the new listener.
    stream.given_again += len(frames)
    stream.lost_count += lost
    if coming and _take_over(stream, last, frames):
        if lost:
            _said_lost(stream, lost, len(frames), when)
        return True
    stream.given_again -= len(frames)
    stream.lost_count -= lost
    if on != 1:
        if unread > 0:
            stream.lost_count += unwritten
            _said_unread(unwritten, unread, when)
        return False
    events = [e for e in map(_decode, frames) if e and e.get("kind") in RECORDS]
    stream.again_count += len(events)
    stream.lost_count += lost
    if events or lost:
        n = len(events) + lost
        write_stderr(
            f"mptrace: warning: the listener died ({when}) before writing {n} "
            f"record{'' if n == 1 else 's'} process {os.getpid()} had sent it; "
            f"{len(events)} follow on this stderr"
            + (f", {lost} (past the last {KEEP_BYTES} bytes) are lost" if lost else "")
            + ".\n"
        )
    for event in events:
        stream.fallback(event)
    return False


def _take_over(stream: Stream, last: int, frames: list[bytes]) -> bool:
    """Connect to a listener that took over and give it *frames* again,
    records ``last - len(frames) + 1`` .. *last*."""
    first = last - len(frames) + 1
    try:
        stream._connect(after=first - 1, patient=True)
    except Exception:
        return False
    fd = stream._fd
    assert fd is not None
    try:
        for seq, frame in enumerate(frames, first):
            stream._write_any(fd, frame)
            stream._written += len(frame)
            stream._kept.keep(seq, frame, stream._written)
    except OSError:  # this one died too, or stalled: the fallback has them all
        stream._fd = None
        _pipe.close(fd, stream._ours)
        stream._drop_slot()
        return False
    return True


def told(stream: Stream, hello: Event) -> Event:
    """Add to *hello* what this process counted since the session began.

    Totals, not what changed since the last ``hello``: the listener that
    heard of a change may itself die, and the one after it keeps each
    process's latest totals.
    """
    now = (
        stream.given_again,
        stream.again_count + stream.fallback_count,
        stream.lost_count,
    )
    if any(now):
        hello["again"], hello["stderr"], hello["lost"] = now
    return hello


def _said_lost(stream: Stream, lost: int, given: int, when: str) -> None:
    write_stderr(
        f"mptrace: warning: the listener died ({when}) before writing "
        f"{lost + given} records process {os.getpid()} had sent it; {given} "
        f"were given to the listener that took over, {lost} (past the last "
        f"{KEEP_BYTES} bytes) are lost.\n"
    )


def _said_unread(lost: int, unread: int, when: str) -> None:
    write_stderr(
        f"mptrace: warning: the listener died before reading {lost} record"
        f"{'' if lost == 1 else 's'} ({unread} bytes) process {os.getpid()} "
        f"had sent it ({when}); they are lost.\n"
    )


def write_stderr(text: str) -> None:
    """Write to fd 2 with ``os.write``: no buffer lock that a fork could leave held."""
    data = text.encode("utf-8", "backslashreplace")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:
        pass
