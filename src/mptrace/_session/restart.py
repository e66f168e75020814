"""A listener that dies is replaced: same folder, address, key and sinks.

The owner notices a SIGKILL or the OOM killer at once, with no thread and
no signal handler of its own: the exit monitor's thread, which runs while
the owner has children (and so while anyone but the owner logs), waits on
the listener's pidfd beside the children's sentinels
(``_instrument.monitor.watch_also``). With no child running, the owner's
own stream notices at its next write and asks for the restart itself
(``Stream.on_death``).

The new listener is a fresh interpreter with the same configuration: a
JSON-lines file is opened for appending, the console goes on writing to the
same stderr. Its socket is bound beside the old address and renamed over
it, so a writer finds either the old address refusing (and waits, see
``_participant.revive``) or the new listener, never nothing. After
``MAX_RESTARTS`` the address is removed instead: writers find nothing there
and fall back to their stderr at once, as they did before there were
restarts.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
from typing import TYPE_CHECKING

from mptrace._instrument import monitor as _monitor
from mptrace._participant import participant as _participant
from mptrace._participant.stream import write_stderr
from mptrace._session import echo as _echo
from mptrace._session import launch as _launch

if TYPE_CHECKING:
    from mptrace._session.session import Session

#: New listeners a session starts at most; past that, writers fall back.
MAX_RESTARTS = 3


class Restarter:
    """Watches *session*'s listener and starts a new one when it dies."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.count = 0
        self._lock = threading.Lock()  # one restart at a time
        self._taken = threading.Condition()  # notified when a listener took over
        self.taken_over = 0
        self._stopping = False
        self._pidfd: int | None = None
        self._arm()

    def _arm(self) -> None:
        """Have the exit monitor's thread, while it runs, see the listener die."""
        self._disarm()
        proc = self.session._proc
        if proc is None or self._stopping:
            return
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (OSError, AttributeError):  # gone already, or no pidfds here
            return
        _monitor.watch_also(self._pidfd, self._died)

    def _disarm(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            _monitor.unwatch_also(fd)
            os.close(fd)

    def _died(self) -> None:
        """From the monitor's thread: the listener's pidfd is readable."""
        if not self.revive():
            with self._lock:
                self._disarm()

    def revive(self) -> bool:
        """Start a new listener if the session's has died; True when one runs."""
        with self._lock:
            session, proc = self.session, self.session._proc
            if proc is None:
                return False
            if proc.poll() is None:
                # Alive: not dead, or already replaced, even while the session
                # ends (the owner's first write since is often its last).
                return True
            if self._stopping:
                return False
            why = _why(proc)
            if self.count >= MAX_RESTARTS:
                _unlink(session.child_config.address)
                return False
            self.count += 1
            try:
                relay, (new, status) = _echo.start_with_relay(
                    lambda fd: _launch.start_listener(
                        session.child_config.address, fd, replace=True
                    )
                )
                cfg = dataclasses.replace(session.listener_config, took_over=why)
                _launch.send_config(new, cfg, session.child_config)
                _launch.confirm(new, status)
            except Exception as exc:
                write_stderr(f"mptrace: warning: no new listener started: {exc!r}\n")
                _unlink(session.child_config.address)
                return False
            old_status, old_relay = session._status, session._relay
            session._proc, session._status, session._relay = new, status, relay
            if old_status is not None:
                os.close(old_status)
            if old_relay is not None:
                old_relay.close()  # the dead listener's last words are copied
            self._arm()  # the new one, while the monitor runs
            with self._taken:
                self.taken_over += 1
                self._taken.notify_all()
            return True

    def wait(self, count: int, timeout: float) -> bool:
        """Until *count* new listeners have taken over; False after *timeout* s."""
        with self._taken:
            return self._taken.wait_for(lambda: self.taken_over >= count, timeout)

    def stop(self) -> None:
        """The session ends: a listener that exits now is not replaced."""
        with self._lock:
            self._stopping = True
            self._disarm()
            proc = self.session._proc
            if proc is not None and proc.poll() is not None:
                # Dead, and not replaced now: writers find no address and
                # fall back at once, instead of waiting for a new one.
                _unlink(self.session.child_config.address)


def _why(proc: subprocess.Popen[bytes]) -> str:
    code = proc.returncode
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _unlink(address: str) -> None:
    try:
        os.unlink(address)
    except OSError:
        pass


def watch(session: Session) -> Restarter | None:
    """Watch *session*'s listener; its owner's stream asks for a restart too."""
    try:
        restarter = Restarter(session)
    except Exception:  # cannot watch it: a dead listener is not replaced
        return None
    part = _participant.current()
    if part is not None:
        part.stream.on_death = restarter.revive
    return restarter


def stop(restarter: Restarter | None) -> None:
    if restarter is not None:
        restarter.stop()
