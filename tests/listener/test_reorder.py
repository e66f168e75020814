"""The console's reorder window: in timestamp order, each line late by at most the window."""

from __future__ import annotations

import threading
import time

from mptrace._listener import reorder as _reorder
from mptrace._listener.reorder import Reorder


class Collector:
    """What a Reorder emits, with the time each item went out."""

    def __init__(self, wanted: int) -> None:
        self.items: list[object] = []
        self.times: list[float] = []
        self.wanted = wanted
        self.done = threading.Event()

    def __call__(self, items: list[object]) -> None:
        self.items.extend(items)
        self.times.extend(time.monotonic() for _ in items)
        if len(self.items) >= self.wanted:
            self.done.set()


class TestReorder:
    def test_lines_out_of_order_come_out_in_order(self):
        """Keys 30, 10, 20 added within the window come out 10, 20, 30."""
        out = Collector(3)
        order = Reorder(out, window=0.05)
        for key in (30, 10, 20):
            order.add(key, key)
        assert out.done.wait(10)
        assert out.items == [10, 20, 30]
        order.close()

    def test_a_line_is_held_for_the_window_and_not_much_longer(self):
        """An item goes out no sooner than the window after it came, and soon after."""
        out = Collector(1)
        order = Reorder(out, window=0.2)
        added = time.monotonic()
        order.add(1, "x")
        assert out.done.wait(10)
        assert 0.2 <= out.times[0] - added < 2.0
        order.close()

    def test_a_line_later_than_the_window_still_prints(self):
        """A key older than one already out is printed, not dropped."""
        out = Collector(1)
        order = Reorder(out, window=0.02)
        order.add(100, "new")
        assert out.done.wait(10)
        out.done.clear()
        out.wanted = 2
        order.add(1, "old")
        assert out.done.wait(10)
        assert out.items == ["new", "old"]
        order.close()

    def test_flush_lets_everything_out_in_order(self):
        """flush() and close() do not wait for the window."""
        out = Collector(3)
        order = Reorder(out, window=3600)
        for key in (3, 1, 2):
            order.add(key, key)
        order.flush()
        assert out.items == [1, 2, 3]
        order.add(0, 0)
        order.close()
        assert out.items == [1, 2, 3, 0]
        assert order.thread is not None and not order.thread.is_alive()

    def test_held_lines_are_bounded(self, monkeypatch):
        """Past HELD_MAX held lines, the oldest half go out at once, in order."""
        monkeypatch.setattr(_reorder, "HELD_MAX", 10)
        out = Collector(5)
        order = Reorder(out, window=3600)
        for key in range(11, 0, -1):
            order.add(key, key)
        assert out.items == [1, 2, 3, 4, 5]
        order.close()
