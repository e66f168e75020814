"""Frames out of a byte stream: the listener's reassembly of what a pipe carries."""

from __future__ import annotations

from mptrace._schema import events as _events


class FrameReader:
    """Splits a byte stream into frames; keeps the tail of an unfinished one.

    Reassembly is linear: the bytes of a large frame are appended as they come
    and copied once, when it is whole.
    """

    __slots__ = ("_buf", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 0

    def feed(self, data: bytes) -> list[memoryview]:
        """Add *data*; return every frame now complete (prefix and JSON body).

        Raises ``ValueError`` on a length that no writer would send.
        """
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            data = bytes(self._buf)
            self._buf = bytearray()
        view = memoryview(data)
        frames = []
        pos, end = 0, len(data)
        size_of = _events.HEADER.unpack_from
        self._need = 0
        while end - pos >= 4:
            (size,) = size_of(data, pos)
            if size > _events.MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds {_events.MAX_FRAME}")
            stop = pos + 4 + size
            if stop > end:
                self._need = stop - pos
                break
            frames.append(view[pos + 4 : stop])
            pos = stop
        if pos < end:
            self._buf = bytearray(view[pos:])
            self._need = self._need or 4
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame: a writer that died mid-record."""
        return len(self._buf)
