"""The writing end of the funnel: one synchronous stream per process.

``Stream.send`` encodes a plain dict as JSON and writes it to this process's own
pipe to the listener before it returns, so a process that then calls ``os._exit``, is
SIGKILLed or segfaults loses nothing it already sent. No lock is shared with
another process. When the listener is gone (or stops reading for longer than
``block_timeout`` seconds), the stream says so once on stderr and from then on
renders every event to this process's stderr instead: nothing is dropped and
nothing blocks.
"""

from __future__ import annotations

import os
import select
import threading
import time
import weakref
from typing import Any

from . import _wire

_streams: weakref.WeakSet[Stream] = weakref.WeakSet()
_fork_hook_installed = False


def _process_name() -> str:
    import sys

    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return "MainProcess"
    try:
        return mp.current_process().name  # type: ignore[no-any-return]
    except Exception:  # pragma: no cover - interpreter shutting down
        return "?"


def _after_fork_in_child() -> None:
    for stream in list(_streams):
        stream._forget_parent()


class Stream:
    """This process's connection to the listener at *address*."""

    def __init__(
        self,
        address: str,
        authkey: bytes,
        block_timeout: float,
        ppid: int | None = None,
        redact: Any = None,
    ) -> None:
        global _fork_hook_installed
        self.address = address
        self.authkey = authkey
        self.block_timeout = block_timeout
        # Secrets are redacted here, so they never leave the process.
        self.redact = redact
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._failed = False
        self._pid = os.getpid()
        # The process that started this one: under forkserver that is not
        # os.getppid() (the fork server), so the starter says who it is.
        self._ppid = os.getppid() if ppid is None else ppid
        self._seq = 0
        self.fallback_count = 0
        _streams.add(self)
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True

    # -- life cycle -------------------------------------------------------

    def _forget_parent(self) -> None:
        """In a forked child: the inherited pipe belongs to the parent."""
        self._lock = threading.Lock()
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # our descriptor only; the parent's stays open
            except OSError:
                pass
        self._failed = False
        self._pid = os.getpid()
        self._ppid = os.getppid()
        self._seq = 0
        self.fallback_count = 0

    def _connect(self) -> None:
        fd = _wire.open_stream(self.address, self.authkey, self.block_timeout)
        self._fd = fd
        hello = {
            "kind": "hello",
            "pid": self._pid,
            "ppid": self._ppid,
            "process": _process_name(),
            "seq": 0,
        }
        try:
            self._write_all(fd, _wire.encode(hello))
        except BaseException:
            self._fd = None
            os.close(fd)
            raise

    @property
    def connected(self) -> bool:
        return self._fd is not None

    @property
    def failed(self) -> bool:
        """True once this process has fallen back to stderr."""
        return self._failed

    def close(self) -> None:
        """Close the stream; the listener sees EOF. Idempotent."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:  # pragma: no cover
                    pass

    # -- the hot path -----------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        """Deliver *event* (a plain dict) or render it to stderr. Never raises."""
        with self._lock:
            self._seq += 1
            event["pid"] = self._pid
            event["ppid"] = self._ppid
            event["seq"] = self._seq
            if self.redact is not None:
                try:
                    event = self.redact(None, event["kind"], event)
                except Exception as exc:  # fail closed: keep the record, not its fields
                    event = _redaction_failed(event, exc)
            if self._fd is None and not self._failed:
                try:
                    self._connect()
                except Exception as exc:
                    self._fail(f"cannot reach the listener at {self.address}: {exc!r}")
            fd = self._fd
            if fd is not None:
                data = self._encode(event)
                try:
                    self._write_all(fd, data)
                    return
                except (BlockingIOError, TimeoutError):
                    self._fail(
                        f"the listener accepted nothing for {self.block_timeout} s"
                    )
                except OSError as exc:
                    self._fail(f"the listener is gone ({exc.__class__.__name__})")
            self._to_stderr(event)

    def _encode(self, event: dict[str, Any]) -> bytes:
        try:
            return _wire.encode(event)
        except Exception as exc:  # the last safety net: values are plain already
            from ._plain import safe_repr

            safe = {k: v if type(v) in (int, str) else safe_repr(v) for k, v in event.items()}
            safe["mptrace_error"] = f"event could not be encoded: {safe_repr(exc)}"
            return _wire.encode(safe)

    def _write_all(self, fd: int, data: bytes) -> None:
        """Write *data* whole, waiting at most ``block_timeout`` in total."""
        try:
            written = os.write(fd, data)  # nearly always the whole record
        except BlockingIOError:
            written = 0
        if written == len(data):
            return
        deadline = time.monotonic() + self.block_timeout
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
        """Give up on the listener for the rest of this process's life."""
        self._failed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass
        _write_stderr(
            f"mptrace: warning: {why}; process {self._pid} now writes its "
            "records to its own stderr.\n"
        )

    def _to_stderr(self, event: dict[str, Any]) -> None:
        if event.get("kind") in ("hello", "shutdown"):
            return  # words for the listener alone
        self.fallback_count += 1
        try:
            from ._render import render_fallback

            line = render_fallback(event)
        except Exception as exc:  # pragma: no cover - renderer bug
            line = f"{event!r} (rendering failed: {exc!r})"
        if line is not None:
            _write_stderr(line + "\n")


def _redaction_failed(event: dict[str, Any], exc: Exception) -> dict[str, Any]:
    kept = {k: v for k, v in event.items() if k in _wire.STRUCTURE_KEYS}
    kept["mptrace_error"] = f"redaction failed ({exc!r}); the record's fields were withheld"
    return kept


def _write_stderr(text: str) -> None:
    # os.write, not sys.stderr: no buffer lock that a fork could leave held.
    data = text.encode("utf-8", "backslashreplace")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:
        pass
