"""Joining the program's structlog as a guest (stdlib logging: ``logging_guest``).

When the program has configured structlog, mptrace inserts one processor
just before the last one (the renderer, by structlog's convention): it
sends a copy of each event dict and hands the dict on unchanged. The list
is changed in place, so loggers cached before ``init()`` send too. A later
``structlog.configure()`` gets the processor again. When the program has
not configured structlog, mptrace configures it to send events to the
funnel alone (the console exporter prints them). When structlog hands its
events to stdlib logging, ``logging_guest`` sees them and no processor is
added.

The console rule: an event the program's structlog already wrote to
``sys.stderr`` or ``sys.stdout`` carries ``echoed: true``; the console
exporter does not print it again (the JSON-lines file and OTLP still get it).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from mptrace._participant import hooks as _hooks
from mptrace._participant.sources import (
    FunnelLoggerFactory,
    Send,
    StructlogForwarder,
)

_LEVELS = {
    "debug": 10,
    "info": 20,
    "msg": 20,
    "log": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "exception": 40,
    "err": 40,
    "critical": 50,
    "fatal": 50,
}


# -- structlog ------------------------------------------------------------------


class StructlogTap:
    """A processor before the program's renderer: sends a copy, changes nothing."""

    __slots__ = ("active", "echoed", "level", "send")
    _forward = StructlogForwarder()

    def __init__(self, send: Send, level: int) -> None:
        self.send = send
        self.level = level
        self.echoed = False
        self.active = True

    def __call__(
        self, logger: Any, method_name: str, event_dict: dict[str, Any]
    ) -> dict[str, Any]:
        if not self.active or not isinstance(event_dict, dict):
            return event_dict
        try:
            name = event_dict.get("level") or method_name
            if _LEVELS.get(str(name).lower(), 20) >= self.level:
                (event,), _ = self._forward(logger, method_name, dict(event_dict))
                if self.echoed:
                    event["echoed"] = True
                self.send(event)
        except Exception:  # telemetry never breaks the program's own logging
            pass
        return event_dict


def _prints_to_terminal(factory: Any) -> bool:
    """Whether structlog's logger factory writes to this process's stdout/stderr."""
    import structlog

    factories = (
        structlog.PrintLoggerFactory,
        structlog.WriteLoggerFactory,
        structlog.BytesLoggerFactory,
    )
    if not isinstance(factory, factories):
        return False
    file = getattr(factory, "_file", None)
    return file is None or file in (sys.stdout, sys.stderr) or _is_fd(file, 1, 2)


def _is_fd(file: Any, *fds: int) -> bool:
    try:
        return int(file.fileno()) in fds
    except Exception:
        return False


class StructlogGuest:
    """mptrace's part in structlog: its own configuration, or a tap in the program's."""

    def __init__(self, send: Send, level: int) -> None:
        self.send = send
        self.level = level
        self.tap = StructlogTap(send, level)
        self._own = False
        self._lists: list[list[Any]] = []  # processor lists holding the tap
        self._configure: Any = None
        self._left = False

    def install(self) -> None:
        """Join structlog now if the program imported it, else when it does."""
        self._left = False
        _hooks.when_imported("structlog", self._join)

    def _join(self, structlog: Any) -> None:
        if self._left:
            return
        if structlog.is_configured():
            self._tap_into(structlog.get_config())
        else:
            self._configure_own()
        self._patch_configure()

    def _configure_own(self) -> None:
        import structlog

        self._own = True
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                StructlogForwarder(),  # type: ignore[list-item]
            ],
            wrapper_class=structlog.make_filtering_bound_logger(self.level),
            logger_factory=FunnelLoggerFactory(self.send),
            cache_logger_on_first_use=False,
        )

    def _tap_into(self, config: dict[str, Any]) -> None:
        import structlog._config
        import structlog.stdlib

        factory = config["logger_factory"]
        if isinstance(factory, structlog.stdlib.LoggerFactory):
            return  # its events reach the stdlib handler
        procs = config["processors"]
        if not isinstance(procs, list):
            procs = structlog._config._CONFIG.default_processors = list(procs)
        if any(p is self.tap for p in procs):
            return
        self.tap.echoed = _prints_to_terminal(factory)
        procs.insert(max(0, len(procs) - 1), self.tap)
        self._lists.append(procs)

    def _patch_configure(self) -> None:
        import structlog
        import structlog._config

        original = structlog._config.configure
        signature = inspect.signature(original)
        guest = self

        def configure(*args: Any, **kwargs: Any) -> None:
            if guest._own:  # the program configures structlog for the first time
                bound = signature.bind(*args, **kwargs)
                guest._own = False
                structlog.reset_defaults()
                original(**bound.arguments)
            else:
                original(*args, **kwargs)
            try:
                guest._tap_into(structlog.get_config())
            except Exception:  # the program's configuration stands regardless
                pass

        configure.__doc__ = original.__doc__
        configure.__wrapped__ = original  # type: ignore[attr-defined]
        self._configure = (original, configure)
        structlog.configure = structlog._config.configure = configure

    def leave(self) -> None:
        self._left = True
        _hooks.forget("structlog", self._join)
        if "structlog" not in sys.modules:
            return  # never imported: nothing was joined
        import structlog
        import structlog._config

        self.tap.active = False
        if self._configure is not None:
            original, patched = self._configure
            if structlog._config.configure is patched:
                structlog._config.configure = original
            if structlog.configure is patched:
                structlog.configure = original
        for procs in self._lists:
            procs[:] = [p for p in procs if p is not self.tap]
        if self._own:
            structlog.reset_defaults()
