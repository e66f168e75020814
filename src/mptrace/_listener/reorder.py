"""The console's reorder window: lines of many processes, out in timestamp order.

Each process's lines reach the listener in order, but processes race each
other: through separate pipes, read in turns, a line can arrive after a
line of another process stamped up to tens of milliseconds later (23 ms
was measured on two busy cores). The console therefore holds every line
for WINDOW after it arrives and lets lines out in order of their ``ts``:
when a line's time is up, it goes with every held line stamped no later.
No line waits longer than WINDOW (a line later than that still prints,
out of place, rather than never); a flush lets everything out at once.

WINDOW is 150 ms: six times the skew measured, and short enough that a
person still sees a line as it happens (about the delay of a terminal
echoing a key under load). What the program prints itself is not held, so
a ``print`` can come before records up to WINDOW older. Held lines are
bounded by HELD_MAX; past it the oldest go out early.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

WINDOW = 0.15
HELD_MAX = 10_000
#: How often ``tick`` runs while it asks to (the progress line's redraw).
TICK = 0.1


class Reorder:
    """Holds items by key (a timestamp) for *window* seconds; *emit* gets them
    in key order, from one thread of its own, under ``lock``.

    *tick*, if given, runs under the lock at least every TICK seconds while it
    returns True (and once after each batch of lines goes out).
    """

    def __init__(
        self,
        emit: Callable[[list[Any]], None],
        window: float = WINDOW,
        tick: Callable[[], bool] | None = None,
    ) -> None:
        self.emit = emit
        self.window = window
        self.tick = tick
        self.lock = threading.Condition()
        self.heap: list[tuple[int, int, Any]] = []
        self.due: deque[tuple[float, int]] = deque()  # (deadline, key), arrival order
        self.count = 0
        self.ticking = False
        self.closed = False
        self.thread: threading.Thread | None = None

    def add(self, key: int, item: Any) -> None:
        with self.lock:
            self.count += 1
            heapq.heappush(self.heap, (key, self.count, item))
            self.due.append((time.monotonic() + self.window, key))
            if len(self.heap) > HELD_MAX:
                self._out([heapq.heappop(self.heap)[2] for _ in range(HELD_MAX // 2)])
            # Deadlines only grow: with one held already, the thread is
            # waiting for an earlier one and needs no wake (a switch per line).
            if len(self.due) == 1:
                self._wake()

    def wake(self) -> None:
        """Run ``tick`` soon (something for it changed)."""
        with self.lock:
            self.ticking = True
            self._wake()

    def _wake(self) -> None:
        if self.closed:
            return
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name="mptrace-console", daemon=True
            )
            self.thread.start()
        self.lock.notify()

    def _run(self) -> None:
        with self.lock:
            while not self.closed:
                now = time.monotonic()
                upto = None
                while self.due and self.due[0][0] <= now:
                    key = self.due.popleft()[1]
                    upto = key if upto is None else max(upto, key)
                if upto is not None:
                    items = []
                    while self.heap and self.heap[0][0] <= upto:
                        items.append(heapq.heappop(self.heap)[2])
                    self._out(items)
                if self.ticking and self.tick is not None:
                    self.ticking = bool(self.tick())
                wait = self.due[0][0] - now if self.due else None
                if self.ticking:
                    wait = TICK if wait is None else min(wait, TICK)
                self.lock.wait(wait)

    def _out(self, items: list[Any]) -> None:
        if items:
            self.emit(items)
            self.ticking = self.tick is not None

    def flush(self) -> None:
        """Let every held item out now, in order."""
        with self.lock:
            items = [heapq.heappop(self.heap)[2] for _ in range(len(self.heap))]
            self.due.clear()
            self._out(items)

    def close(self, timeout: float = 1.0) -> None:
        """Everything out, and the thread stopped."""
        with self.lock:
            self.closed = True
            self.lock.notify()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.flush()
