"""The drop-in for ``multiprocessing.Process``, and what any process does to join.

A process started in a session carries the session's :class:`ChildConfig`
(socket path, key, level) and, before its ``run()``, joins the session as a
participant of its own, under any start method, and for children of
children. The ``on_*`` functions do it around the stdlib's own methods,
passed in as ``original``: the drop-in passes ``super()``'s, and
``stdlib`` passes the saved methods of ``BaseProcess`` itself, so a
plain ``multiprocessing.Process`` behaves the same. Contexts for each start
method are in ``pool.py``, beside the pools they make.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mptrace._instrument import lifecycle as _lifecycle
from mptrace._instrument import root as _root
from mptrace._instrument.lifecycle import ProcessState, state_of
from mptrace._participant import participant as _participant
from mptrace._schema.config import ChildConfig

_log = logging.getLogger("mptrace.process")


if TYPE_CHECKING:
    _Base = multiprocessing.process.BaseProcess
else:
    _Base = object


def _state(process: Any) -> ProcessState | None:
    """mptrace's state of *process*, without making one for a stranger."""
    return process.__dict__.get("_mptrace")  # type: ignore[no-any-return]


def on_start(process: Any, original: Callable[[], None]) -> None:
    """``start()``: the child will join this process's session, if it has one."""
    part = _participant.current()
    if part is None:
        original()
        return
    state = state_of(process)
    state.config = part.config
    traced = part.config.tracing
    if traced:
        _guard(_lifecycle.before_start, process, part)
    # "started" is when start() began: a forked child may be running
    # before start() returns.
    state.start_ns = time.time_ns()
    original()
    if traced:
        _guard(_lifecycle.after_start, process, part)


def on_join(
    process: Any, original: Callable[[float | None], None], timeout: float | None
) -> None:
    original(timeout)
    state = _state(process)
    if state is not None and state.watch is not None and process.exitcode is not None:
        _guard(_lifecycle.observed_exit, process)


def on_close(process: Any, original: Callable[[], None]) -> None:
    state = _state(process)
    popen = process._popen
    if state is not None and state.watch is not None and popen is not None:
        if popen.poll() is not None:
            _guard(_lifecycle.observed_exit, process)
    original()


def on_end(process: Any, original: Callable[[], None], how: str) -> None:
    """``terminate()`` or ``kill()``: said before the signal goes."""
    if _state(process) is not None:
        _guard(_lifecycle.terminated, process, how)
    original()


def on_bootstrap(
    process: Any, original: Callable[..., int], *args: Any, **kwargs: Any
) -> int:
    """``_bootstrap``, in the child under every start method.

    A user's subclass that overrides ``run()`` is covered too.
    """
    state = _state(process)
    if state is not None and state.config is not None:
        _wrap_run(process, state.config)
    code: int = original(*args, **kwargs)
    if state is not None and state.traced:
        part = _participant.current()
        if part is not None:
            # Children of this child that nobody joined: their spans close now.
            _guard(part.stop_monitor)
        _guard(_lifecycle.child_finished, process, code)
    return code


def _join_session(process: Any, config: ChildConfig) -> None:
    try:
        part = _participant.join(config, getattr(process, "_parent_pid", None))
        if config.instrument:
            # As the session's owner did: a spawn or forkserver child of a
            # drop-in has not (a stdlib one has, and this adds what is left).
            import mptrace  # the package's instrument(): _instrument.stdlib's

            mptrace.instrument(ipc=config.trace_ipc)
        if config.tracing:
            _lifecycle.child_running(process, part)
            # A program this child starts (subprocess, os.exec*) joins its trace.
            _root.put_in_env(state_of(process).carrier)
    except Exception as exc:  # never stop the child for telemetry
        sys.stderr.write(f"mptrace: warning: could not join the session: {exc!r}\n")


def _wrap_run(process: Any, config: ChildConfig) -> None:
    run = process.run

    def run_and_report() -> None:
        # Joined here, not earlier: _bootstrap has made this process
        # current_process() by now, so every record names it rightly.
        _join_session(process, config)
        try:
            run()
        except SystemExit:
            raise
        except BaseException as exc:
            # The traceback starts at the user's run(): this frame is ours.
            if exc.__traceback__ is not None:
                exc.__traceback__ = exc.__traceback__.tb_next
            _log.error(
                "process %s raised an uncaught exception",
                process.name,
                exc_info=True,
            )
            _lifecycle.record_exception(process, exc)
            raise

    process.run = run_and_report


def _guard(func: Any, *args: Any) -> None:
    """Run a telemetry step; a failure is one warning, never the program's end."""
    try:
        func(*args)
    except Exception as exc:
        _log.warning("mptrace could not record a process transition: %r", exc)


class _Participating(_Base):
    """Mixin for ``BaseProcess`` subclasses: the child joins the session.

    With tracing on, the parent also makes the child a span and records its
    lifecycle (see ``lifecycle``). Everything mptrace keeps on the process
    object is one ``lifecycle.ProcessState``, ``self._mptrace``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state_of(self)  # created now: the "created" time

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("run", None)  # the child's own wrapper, never the parent's
        return state

    def start(self) -> None:
        on_start(self, super().start)

    def join(self, timeout: float | None = None) -> None:
        on_join(self, super().join, timeout)

    def close(self) -> None:
        on_close(self, super().close)

    def terminate(self) -> None:
        on_end(self, super().terminate, "terminate")

    def kill(self) -> None:
        on_end(self, super().kill, "kill")

    def _bootstrap(self, *args: Any, **kwargs: Any) -> int:
        return on_bootstrap(self, super()._bootstrap, *args, **kwargs)  # type: ignore[misc]


class Process(_Participating, multiprocessing.Process):
    """``multiprocessing.Process`` whose child joins the current session.

    Same signature and behaviour as the stdlib class, with the default start
    method; use :func:`get_context` for a specific one.
    """
