"""Rounds of stacks: every participating process's, as ``stacks`` events.

A round signals each process that has armed a stacks file and whose stream
is open (so whose pid is its own, not a reused one), and the owner while it
lives; it waits until every file it signalled has grown and then stayed
still, and turns each process's new dump (``_schema.stacks.parse``) into
one event for the sinks. Two things start a round, both seen on the listener's tick:

- ``mptrace stacks`` leaves a request file in ``SESSION/stacks``; the
  round's events go to the sinks and, as JSON lines, into an answer file
  the command reads and prints;
- the owner wrote a dump on SIGTERM or SIGINT (its ``.stop`` file grew):
  the run is being stopped. A process that wrote its own ``.stop`` dump (the
  signal reached the whole group) is not signalled again; the others are,
  while they still run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from mptrace._schema import stacks as _stacks
from mptrace._schema.config import ListenerConfig
from mptrace._schema.encoding import to_json
from mptrace._schema.events import Event

#: The longest a round waits for the processes it signalled to answer.
ANSWER_WAIT = 1.0
#: A dump is whole once its file has not grown for this long (faulthandler
#: writes a dump in one go from its signal handler, in well under this).
STILL = 0.03
#: Requests are looked for when the folder changes, and at least this often
#: (a folder's time may not change for two files made in the same tick).
RESCAN = 1.0
_POLL = 0.005


class _Transport(Protocol):
    @property
    def peers(self) -> dict[int, Any]: ...
    @property
    def owner_gone(self) -> bool: ...


class StackTaker:
    """Watches the stacks folder on each tick; runs a round when asked."""

    def __init__(
        self,
        cfg: ListenerConfig,
        transport: _Transport,
        emit: Callable[[Event], None],
    ) -> None:
        on = bool(cfg.session_dir and cfg.stacks_signal)
        self.folder = _stacks.folder(cfg.session_dir) if on else ""
        self.signum = cfg.stacks_signal
        self.owner_pid = cfg.owner_pid
        self.run_id = cfg.run_id
        self.transport = transport
        self.emit = emit
        self.offsets: dict[str, int] = {}
        self.names: dict[int, tuple[str, Any]] = {}  # pid: (name, ppid), once seen
        self._mtime = 0
        self._scanned = 0.0

    def _path(self, pid: int, suffix: str) -> str:
        return os.path.join(self.folder, f"{pid}{suffix}")

    def tick(self) -> None:
        if not self.folder:
            return
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            return
        owner_stop = self._path(self.owner_pid, _stacks.STOP)
        if _size(owner_stop) > self.offsets.get(owner_stop, 0):
            self.round(_stacks.STOPPED)
        now = time.monotonic()
        if mtime != self._mtime or now - self._scanned >= RESCAN:
            self._mtime, self._scanned = mtime, now
            self._answer_requests()

    def _answer_requests(self) -> None:
        try:
            names = [e.name for e in os.scandir(self.folder)]
        except OSError:
            return
        by_reason: dict[str, list[str]] = {}
        for name in names:
            if name.startswith(_stacks.REQUEST):
                by_reason.setdefault(self._reason(name), []).append(name)
        for reason, asked in by_reason.items():
            events = self.round(reason)
            body = b"".join(to_json(e) + b"\n" for e in events)
            for name in asked:
                token = name[len(_stacks.REQUEST) :]
                answer = os.path.join(self.folder, _stacks.ANSWER + token)
                try:
                    with open(answer + ".part", "wb") as f:
                        f.write(body)
                    os.replace(answer + ".part", answer)
                    os.unlink(os.path.join(self.folder, name))
                except OSError:
                    pass

    def _reason(self, name: str) -> str:
        try:
            with open(os.path.join(self.folder, name), "rb") as f:
                said = f.read(64).decode("ascii", "replace")
        except OSError:
            said = ""
        return said if said in _stacks.REASONS else _stacks.ASKED

    def round(self, reason: str) -> list[Event]:
        """Take the stacks of every process; emit and return the events."""
        for peer in list(self.transport.peers.values()):
            if type(peer.pid) is int:
                self.names[peer.pid] = (peer.process, peer.ppid)
        live = {p.pid for p in self.transport.peers.values() if type(p.pid) is int}
        if not self.transport.owner_gone:  # known alive, connected yet or not
            live.add(self.owner_pid)
        pids = sorted(live | {self.owner_pid})
        use_stop = reason == _stacks.STOPPED
        signalled: dict[int, str] = {}
        writing: list[str] = []  # dumps made on SIGTERM/SIGINT, maybe unfinished
        for pid in pids:
            ask = self._path(pid, _stacks.ASK)
            stop = self._path(pid, _stacks.STOP)
            if use_stop and _size(stop) > self.offsets.get(stop, 0):
                writing.append(stop)
                continue  # it wrote its own on the signal
            if pid in live and os.path.exists(ask):
                try:
                    os.kill(pid, self.signum)
                except OSError:
                    continue
                signalled[pid] = ask
        self._wait(list(signalled.values()), writing)
        events = []
        for pid in pids:
            stop_text = self._take(self._path(pid, _stacks.STOP)) if use_stop else ""
            ask_text = self._take(self._path(pid, _stacks.ASK))
            text = stop_text or ask_text
            if not text and pid not in signalled:
                continue
            name, ppid = self.names.get(pid, ("MainProcess", None))
            threads = _stacks.parse(text)
            error = None
            if not threads:
                error = f"it did not answer within {ANSWER_WAIT:g} s"
            event = _stacks.stacks_event(pid, name, reason, threads, error)
            if ppid is not None:
                event["ppid"] = ppid
            if self.run_id:
                event["run"] = self.run_id
            events.append(event)
            self.emit(event)
        return events

    def _wait(self, signalled: list[str], writing: list[str]) -> None:
        """Until every signalled file has grown and none grows any more."""
        if not signalled and not writing:
            return
        deadline = time.monotonic() + ANSWER_WAIT
        sizes: dict[str, int] = {}
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            now = {path: _size(path) for path in signalled + writing}
            if now != sizes:
                sizes, still_since = now, time.monotonic()
            answered = all(sizes[p] > self.offsets.get(p, 0) for p in signalled)
            if answered and time.monotonic() - still_since >= STILL:
                return
            time.sleep(_POLL)

    def _take(self, path: str) -> str:
        """What *path* holds past what was read of it; read from now on."""
        start = self.offsets.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return ""
        self.offsets[path] = start + len(data)
        return data.decode("utf-8", "replace")


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
