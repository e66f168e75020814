"""Joining the program's own logging and structlog as a guest.

stdlib logging
    mptrace adds one handler to the root logger, at mptrace's level. The
    program's handlers get exactly the records they would get without
    mptrace. When mptrace's level is below the root logger's, mptrace lowers
    the root level to its own so that those records are made, and
    ``Logger.handle`` sends a record below the level the program set (the
    logger's effective level as it would be without mptrace) to mptrace's
    handler alone. A log record factory re-attaches the handler when
    ``basicConfig(force=True)`` or ``dictConfig`` took it off, before the
    first record made afterwards goes anywhere. Levels a logger sets for
    itself (``getLogger("noisy").setLevel(WARNING)``) bound mptrace too.

structlog
    When the program has configured structlog, mptrace inserts one processor
    just before the last one (the renderer, by structlog's convention): it
    sends a copy of each event dict and hands the dict on unchanged. The
    list is changed in place, so loggers cached before ``init()`` send too.
    A later ``structlog.configure()`` gets the processor again. When the
    program has not configured structlog, mptrace configures it to send
    events to the funnel alone (the console exporter prints them). When
    structlog hands its events to stdlib logging, the handler sees them and
    no processor is added.

The console rule
    A record the program's own logging already wrote to ``sys.stderr`` or
    ``sys.stdout`` carries ``echoed: true``; the console exporter does not
    print it again (the JSON-lines file and OTLP still get it).
"""

from __future__ import annotations

import inspect
import logging
import sys
from typing import Any

from mptrace._participant import hooks as _hooks
from mptrace._participant.sources import (
    FunnelHandler,
    FunnelLoggerFactory,
    Send,
    StructlogForwarder,
)
from mptrace._schema.events import Event

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


# -- stdlib logging -------------------------------------------------------------


def _prints(handler: logging.Handler) -> bool:
    """Whether *handler* writes to the terminal (this process's stderr or stdout)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(
        handler, logging.FileHandler
    ):
        return False
    stream = handler.stream
    return stream is not None and (
        stream is sys.stderr
        or stream is sys.stdout
        or stream is sys.__stderr__
        or stream is sys.__stdout__
    )


class EchoHandler(FunnelHandler):
    """The funnel handler that marks records the program already printed."""

    def prepare(self, record: logging.LogRecord) -> Event:
        event = super().prepare(record)
        logger: Any = logging.Logger.manager.loggerDict.get(record.name)
        if not isinstance(logger, logging.Logger):
            logger = logging.getLogger()
        level = record.levelno
        while logger is not None:
            for handler in logger.handlers:
                if handler is not self and level >= handler.level and _prints(handler):
                    event["echoed"] = True
                    return event
            logger = logger.parent if logger.propagate else None
        return event


class LoggingGuest:
    """mptrace's handler on the root logger, kept there for the session."""

    def __init__(self, send: Send, level: int, echo: bool) -> None:
        self.handler = (EchoHandler if echo else FunnelHandler)(send)
        self.handler.setLevel(level)
        self.level = level
        self._user_level: int | None = None  # the root level mptrace lowered
        self._old_factory: Any = None
        self._old_handle: Any = None
        self._patched: Any = None
        self._active = False

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self.handler)
        self._active = True
        self._old_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(self._make_record)
        self._lower(root)

    def _lower(self, root: logging.Logger) -> None:
        """Lower the root level to mptrace's, remembering the program's."""
        if root.level <= self.level:
            self._user_level = None
            return
        # Records below the program's level must be made for mptrace, and
        # seen by mptrace alone.
        self._user_level = root.level
        root.setLevel(self.level)
        if self._patched is None:
            self._old_handle = logging.Logger.handle
            guest = self

            def handle(logger: logging.Logger, record: logging.LogRecord) -> None:
                guest._handle(logger, record)

            self._patched = handle
            logging.Logger.handle = handle  # type: ignore[method-assign,assignment]

    def _make_record(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self._old_factory(*args, **kwargs)
        if self._active:
            root = logging.root
            if self.handler not in root.handlers:  # basicConfig(force=True), dictConfig
                root.addHandler(self.handler)
                self._lower(root)  # the level is the new configuration's
        return record

    def _program_level(self, logger: logging.Logger) -> int:
        """*logger*'s effective level as it would be without mptrace."""
        node: Any = logger
        while node is not None:
            if node.level:
                if node is logging.root and self._user_level is not None:
                    return self._user_level if node.level == self.level else node.level
                return int(node.level)
            node = node.parent
        return 0

    def _handle(self, logger: logging.Logger, record: logging.LogRecord) -> None:
        if (
            not self._active
            or self._user_level is None
            or record.levelno >= self._program_level(logger)
        ):
            self._old_handle(logger, record)
            return
        # Below the program's own level: for mptrace only (a non-propagating
        # logger's too, as every record reaches the funnel once).
        if logger.disabled or record.levelno < self.handler.level:
            return
        if logger.filter(record):
            self.handler.handle(record)

    def leave(self) -> None:
        self._active = False
        root = logging.getLogger()
        root.removeHandler(self.handler)
        if self._patched is not None and logging.Logger.handle is self._patched:
            logging.Logger.handle = self._old_handle  # type: ignore[method-assign]
        if root.level == self.level and self._user_level is not None:
            root.setLevel(self._user_level)
        if logging.getLogRecordFactory() == self._make_record:
            logging.setLogRecordFactory(self._old_factory)


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
