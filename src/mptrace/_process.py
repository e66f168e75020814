"""Drop-ins for ``multiprocessing.Process`` and ``multiprocessing.get_context``.

A process started through them carries the session's :class:`ChildConfig`
(socket path, key, level) and, before its ``run()``, opens its own stream to
the listener, under any start method, and for children of children. The
start method is never set globally: it is the context's, as in the stdlib.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context as mpc
import time
from typing import Any

from . import _lifecycle, _session
from ._config import ChildConfig

_log = logging.getLogger("mptrace.process")


class _Participating:
    """Mixin for ``BaseProcess`` subclasses: the child joins the session.

    With tracing on, the parent also makes the child a span and records its
    lifecycle (see ``_lifecycle``).
    """

    _mptrace_config: ChildConfig | None = None
    _mptrace_carrier: dict[str, str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._mptrace_created_ns = time.time_ns()

    def __getstate__(self) -> dict[str, Any]:
        # Spans and watches are the parent's; ids travel in the carrier.
        state = self.__dict__.copy()
        for key in _PARENT_ONLY:
            state.pop(key, None)
        return state

    def start(self) -> None:
        config = self._mptrace_config = _session.current_config()
        traced = config is not None and config.tracing
        if traced:
            _guard(_lifecycle.before_start, self, config)
        # "started" is when start() began: a forked child may be running
        # before start() returns.
        self._mptrace_start_ns = time.time_ns()
        super().start()  # type: ignore[misc]
        if traced:
            _guard(_lifecycle.after_start, self, config)

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)  # type: ignore[misc]
        if getattr(self, "_mptrace_watch", None) is not None and self.exitcode is not None:  # type: ignore[attr-defined]
            _guard(_lifecycle.observed_exit, self)

    def close(self) -> None:
        if getattr(self, "_mptrace_watch", None) is not None and self._popen is not None:  # type: ignore[attr-defined]
            if self._popen.poll() is not None:  # type: ignore[attr-defined]
                _guard(_lifecycle.observed_exit, self)
        super().close()  # type: ignore[misc]

    def terminate(self) -> None:
        _guard(_lifecycle.terminated, self, "terminate")
        super().terminate()  # type: ignore[misc]

    def kill(self) -> None:
        _guard(_lifecycle.terminated, self, "kill")
        super().kill()  # type: ignore[misc]

    def _bootstrap(self, *args: Any, **kwargs: Any) -> int:
        # Runs in the child under every start method; a user's subclass that
        # overrides run() is covered too.
        config = self._mptrace_config
        self._mptrace_traced = False
        if config is not None:
            self._mptrace_wrap_run(config)
        code = super()._bootstrap(*args, **kwargs)  # type: ignore[misc]
        if self._mptrace_traced:
            # Children of this child that nobody joined: their spans close now.
            _guard(_lifecycle.stop_monitor)
            _guard(_lifecycle.child_finished, self, code)
        return code  # type: ignore[no-any-return]

    def _mptrace_join(self, config: ChildConfig) -> None:
        try:
            _session.join(config, getattr(self, "_parent_pid", None))
            if config.tracing:
                _lifecycle.child_running(self, config)
                self._mptrace_traced = True
        except Exception as exc:  # never stop the child for telemetry
            import sys

            sys.stderr.write(f"mptrace: warning: could not join the session: {exc!r}\n")

    def _mptrace_wrap_run(self, config: ChildConfig) -> None:
        run = self.run  # type: ignore[attr-defined]

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
                    self.name,  # type: ignore[attr-defined]
                    exc_info=True,
                )
                _lifecycle.record_exception(self, exc)
                raise

        self.run = run_and_report  # type: ignore[method-assign]


_PARENT_ONLY = ("_mptrace_span", "_mptrace_watch", "run")


def _guard(func: Any, *args: Any) -> None:
    """Run a telemetry step; a failure is one warning, never the program's end."""
    try:
        func(*args)
    except Exception as exc:
        _log.warning("mptrace could not record a process transition: %r", exc)


class Process(_Participating, multiprocessing.Process):  # type: ignore[misc]
    """``multiprocessing.Process`` whose child joins the current session.

    Same signature and behaviour as the stdlib class, with the default start
    method; use :func:`get_context` for a specific one.
    """


def _make(method: str) -> tuple[type, type] | None:
    base_ctx = mpc._concrete_contexts.get(method)  # type: ignore[attr-defined]
    if base_ctx is None:
        return None
    base_process = base_ctx.Process
    process_cls = type(
        base_process.__name__,
        (_Participating, base_process),
        {
            "__module__": __name__,
            "__qualname__": base_process.__name__,
            "__doc__": f"``{base_process.__name__}`` whose child joins the current session.",
        },
    )

    def get_context(self: Any, method: str | None = None) -> Any:
        if method is None:
            return self
        return get_context(method)

    def pool(
        self: Any,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
    ) -> Any:
        from ._pool import Pool

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self)

    ctx_cls = type(
        type(base_ctx).__name__,
        (type(base_ctx),),
        {
            "__module__": __name__,
            "__qualname__": type(base_ctx).__name__,
            "Process": process_cls,
            "get_context": get_context,
            "Pool": pool,
            "__doc__": f"The {method!r} context, whose processes join the current session.",
        },
    )
    return process_cls, ctx_cls


_contexts: dict[str, Any] = {}
for _method in ("fork", "spawn", "forkserver"):
    _made = _make(_method)
    if _made is not None:
        _process_cls, _ctx_cls = _made
        globals()[_process_cls.__name__] = _process_cls
        _contexts[_method] = _ctx_cls()
del _method, _made


def get_context(method: str | None = None) -> Any:
    """Like ``multiprocessing.get_context``; its processes join the session.

    ``get_context("spawn").Process(...)``, ``.Pool(...)`` and a
    ``ProcessPoolExecutor(mp_context=get_context(...))`` all participate.
    """
    if method is None:
        method = multiprocessing.get_context().get_start_method()
    try:
        return _contexts[method]
    except KeyError:
        valid = ", ".join(repr(m) for m in _contexts)
        raise ValueError(
            f"Cannot find context for {method!r}; valid start methods here are {valid}."
        ) from None
