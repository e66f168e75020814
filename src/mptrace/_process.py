"""The drop-in for ``multiprocessing.Process``.

A process started through it carries the session's :class:`ChildConfig`
(socket path, key, level) and, before its ``run()``, joins the session as a
participant of its own, under any start method, and for children of
children. Contexts for each start method are in ``_pool.py``, beside the
pools they make.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import sys
import time
from typing import TYPE_CHECKING, Any

from . import _lifecycle, _participant
from ._config import ChildConfig
from ._lifecycle import state_of

_log = logging.getLogger("mptrace.process")


if TYPE_CHECKING:
    _Base = multiprocessing.process.BaseProcess
else:
    _Base = object


class _Participating(_Base):
    """Mixin for ``BaseProcess`` subclasses: the child joins the session.

    With tracing on, the parent also makes the child a span and records its
    lifecycle (see ``_lifecycle``). Everything mptrace keeps on the process
    object is one ``_lifecycle.ProcessState``, ``self._mptrace``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state_of(self)  # created now: the "created" time

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("run", None)  # the child's own wrapper, never the parent's
        return state

    def start(self) -> None:
        part = _participant.current()
        state = state_of(self)
        traced = part is not None and part.config.tracing
        if part is not None:
            state.config = part.config
        if traced:
            _guard(_lifecycle.before_start, self, part)
        # "started" is when start() began: a forked child may be running
        # before start() returns.
        state.start_ns = time.time_ns()
        super().start()
        if traced:
            _guard(_lifecycle.after_start, self, part)

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if state_of(self).watch is not None and self.exitcode is not None:
            _guard(_lifecycle.observed_exit, self)

    def close(self) -> None:
        popen = self._popen  # type: ignore[attr-defined]
        if state_of(self).watch is not None and popen is not None:
            if popen.poll() is not None:
                _guard(_lifecycle.observed_exit, self)
        super().close()

    def terminate(self) -> None:
        _guard(_lifecycle.terminated, self, "terminate")
        super().terminate()

    def kill(self) -> None:
        _guard(_lifecycle.terminated, self, "kill")
        super().kill()

    def _bootstrap(self, *args: Any, **kwargs: Any) -> int:
        # Runs in the child under every start method; a user's subclass that
        # overrides run() is covered too.
        state = state_of(self)
        if state.config is not None:
            self._mptrace_wrap_run(state.config)
        code: int = super()._bootstrap(*args, **kwargs)  # type: ignore[misc]
        if state.traced:
            part = _participant.current()
            if part is not None:
                # Children of this child that nobody joined: their spans close now.
                _guard(part.stop_monitor)
            _guard(_lifecycle.child_finished, self, code)
        return code

    def _mptrace_join(self, config: ChildConfig) -> None:
        try:
            part = _participant.join(config, getattr(self, "_parent_pid", None))
            if config.tracing:
                _lifecycle.child_running(self, part)
        except Exception as exc:  # never stop the child for telemetry
            sys.stderr.write(f"mptrace: warning: could not join the session: {exc!r}\n")

    def _mptrace_wrap_run(self, config: ChildConfig) -> None:
        run = self.run

        def run_and_report() -> None:
            # Joined here, not earlier: _bootstrap has made this process
            # current_process() by now, so every record names it rightly.
            self._mptrace_join(config)
            try:
                run()
            except SystemExit:
                raise
            except BaseException as exc:
                _log.error(
                    "process %s raised an uncaught exception",
                    self.name,
                    exc_info=True,
                )
                _lifecycle.record_exception(self, exc)
                raise

        self.run = run_and_report  # type: ignore[method-assign]


def _guard(func: Any, *args: Any) -> None:
    """Run a telemetry step; a failure is one warning, never the program's end."""
    try:
        func(*args)
    except Exception as exc:
        _log.warning("mptrace could not record a process transition: %r", exc)


class Process(_Participating, multiprocessing.Process):
    """``multiprocessing.Process`` whose child joins the current session.

    Same signature and behaviour as the stdlib class, with the default start
    method; use :func:`get_context` for a specific one.
    """
