"""What this process wrote into its pipe, kept until the listener has it in a file.

A listener SIGKILLed with records still in the pipe, or read but not yet in
its files (it flushes them every ~50 ms), loses them. The stream keeps the
frames of its last RING records, KEEP_BYTES at most, and where each ended in
the pipe, so that when the listener dies it can give again every record the
listener did not acknowledge (``_schema.handshake``), or, from a listener
that does not acknowledge, count those it never read from the pipe.

Keeping costs the hot path a few list and array stores per record.
"""

from __future__ import annotations

import array

#: Records remembered: where each ended in the pipe, and its frame.
RING = 4096
#: Bytes of frames kept at most: a full pipe (256 KiB) and what a listener
#: holds for ~50 ms of a child logging at full speed fit, with room.
KEEP_BYTES = 1024 * 1024


class Kept:
    """The last RING records of one process: frames and where they ended."""

    __slots__ = ("ends", "frames", "size", "start")

    def __init__(self) -> None:
        self.ends = array.array("Q", bytes(8 * RING))  # bytes written after seq % RING
        self.frames = [b""] * RING  # the frame of seq % RING
        self.size = 0  # bytes in frames
        self.start = 0  # the frames of records before this one were let go

    def keep(self, seq: int, frame: bytes, written: int) -> None:
        """Record *seq*, whose *frame* ended at byte *written* of the pipe."""
        at = seq % RING
        self.ends[at] = written
        frames = self.frames
        size = self.size + len(frame) - len(frames[at])
        frames[at] = frame
        self.size = size if size <= KEEP_BYTES else self._let_go(size, seq)

    def _let_go(self, size: int, seq: int) -> int:
        frames, at = self.frames, max(self.start, seq - RING + 1)
        while size > KEEP_BYTES and at < seq:
            size -= len(frames[at % RING])
            frames[at % RING] = b""
            at += 1
        self.start = at
        return size

    def since(self, written: int, last: int) -> tuple[list[bytes], int]:
        """The frames of records *written* + 1 .. *last*, and how many of
        those records are no longer kept (the oldest)."""
        first, start = written + 1, max(self.start, last - RING + 1)
        lost = max(0, min(start, last + 1) - first)
        kept = [self.frames[seq % RING] for seq in range(max(first, start), last + 1)]
        return kept, lost

    def unread(self, last: int, start: int) -> int:
        """Records up to *last* that ended past byte *start* of the pipe."""
        count, seq = 0, last
        while seq > 0 and count < RING and self.ends[seq % RING] > start:
            count += 1
            seq -= 1
        return count
