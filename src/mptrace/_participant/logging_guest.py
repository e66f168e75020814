"""Joining the program's stdlib logging as a guest: no handler, no level of its own.

The program's logging configuration is the program's. mptrace puts no
handler on any logger and sets no level; as Sentry's logging integration
does, it wraps two methods of ``logging.Logger`` while a participant is
installed::

    logger.info(...) ──▶ isEnabledFor ──▶ _log ──▶ handle ──▶ callHandlers
                          yes if the program's       │  the program's handlers, as
                          levels or mptrace's want   │  always (the last resort too)
                          the record                 └─▶ then mptrace's handler

``Logger.callHandlers``
    runs the program's handlers as it always does, then hands the record to
    mptrace's handler when mptrace's level wants it. It runs once for every
    record, whatever logger made it, so records of ``propagate=False``
    loggers arrive too, and once.
``Logger.isEnabledFor``
    also says yes to a record the program's levels refuse but mptrace's
    wants, so that it is made; ``callHandlers`` then gives it to mptrace
    alone. The answers live in the logger's own level cache, which logging
    clears whenever a level or ``logging.disable`` changes.

As the root logger holds nothing of mptrace's, ``basicConfig()`` after
``init()`` configures as it would without mptrace, ``logging.info()`` on an
unconfigured root still calls it, and logging's last resort still prints
WARNING and above to stderr when the program configured no handler.

mptrace's level is bounded by levels a logger sets for itself
(``getLogger("noisy").setLevel(WARNING)``), not by the root's level, which
is the program's alone. Records of mptrace's own loggers (``mptrace.*``)
go to mptrace alone: the program has none of them without mptrace.

The console rule: a record the program's own logging wrote to
``sys.stderr`` or ``sys.stdout`` (a ``StreamHandler`` of its own, or the last
resort) carries ``echoed: true``; the console exporter does not print it
again (the JSON-lines file and OTLP still get it).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from mptrace._participant.sources import FunnelHandler, Send
from mptrace._schema.events import Event

#: Who wants a record of some level from some logger, as kept in its cache.
#: The stdlib's own answers (True, False) read as PROGRAM and NOBODY. OURS:
#: a record of mptrace's own loggers, which the program never has without
#: mptrace, so its handlers and the last resort never see one.
NOBODY, PROGRAM, MPTRACE, BOTH, OURS = 0, 1, 2, 3, 6

_patch_lock = threading.Lock()
#: The installed guest; None when no participant is installed.
_guest: LoggingGuest | None = None
#: The methods wrapped, by name, while ours are in their place.
_wrapped: dict[str, Any] = {}
#: The logger whose record isEnabledFor let through for mptrace alone, per
#: thread: a record handed to ``Logger.handle`` directly (a socket or queue
#: listener does) goes to the program's handlers as it would without mptrace.
_for_mptrace = threading.local()


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


def _ours(name: str) -> bool:
    return name == "mptrace" or name.startswith("mptrace.")


def printed(record: logging.LogRecord) -> bool:
    """Whether the program's own logging wrote *record* to the terminal."""
    if _ours(record.name):
        return False
    logger: Any = logging.Logger.manager.loggerDict.get(record.name)
    if not isinstance(logger, logging.Logger):
        logger = logging.getLogger()
    level = record.levelno
    if level < logger.getEffectiveLevel():
        return False  # made for mptrace alone
    found = False
    while logger is not None:
        for handler in logger.handlers:
            found = True
            if level >= handler.level and _prints(handler):
                return True
        logger = logger.parent if logger.propagate else None
    last = logging.lastResort
    # No handler on the way: the last resort writes to sys.stderr.
    return not found and last is not None and level >= last.level


class EchoHandler(FunnelHandler):
    """The funnel handler that marks records the program already printed."""

    def prepare(self, record: logging.LogRecord) -> Event:
        event = super().prepare(record)
        if printed(record):
            event["echoed"] = True
        return event


class LoggingGuest:
    """mptrace's place in stdlib logging, for the session."""

    def __init__(self, send: Send, level: int, echo: bool) -> None:
        self.handler = (EchoHandler if echo else FunnelHandler)(send)
        self.handler.setLevel(level)
        self.level = level

    def install(self) -> None:
        global _guest
        with _patch_lock:
            _guest = self
            _wrap("callHandlers", _call_handlers)
            _wrap("isEnabledFor", _is_enabled_for)
        _clear_caches()

    def leave(self) -> None:
        global _guest
        with _patch_lock:
            if _guest is not self:
                return
            _guest = None
            _unwrap("callHandlers", _call_handlers)
            _unwrap("isEnabledFor", _is_enabled_for)
        _clear_caches()  # no answer of mptrace's may outlive it

    def bound(self, logger: logging.Logger) -> int:
        """mptrace's level for *logger*: its own, or one the logger set for itself."""
        node: logging.Logger | None = logger
        # The root's level is the program's alone: it never bounds mptrace.
        while node is not None and node.parent is not None:
            if node.level:
                return max(node.level, self.level)
            node = node.parent
        return self.level

    def decide(self, logger: logging.Logger, level: int) -> int:
        """Who wants a record of *level* from *logger*; kept in its level cache."""
        with _logging_lock:
            if logger.manager.disable >= level:
                who = NOBODY
            elif _ours(logger.name):
                who = OURS if level >= self.bound(logger) else NOBODY
            else:
                who = PROGRAM if level >= logger.getEffectiveLevel() else NOBODY
                if level >= self.bound(logger):
                    who |= MPTRACE
            logger._cache[level] = who  # type: ignore[attr-defined]
        return who


_logging_lock: Any = logging._lock  # type: ignore[attr-defined]


def _clear_caches() -> None:
    logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


def _wrap(name: str, ours: Any) -> None:
    if name in _wrapped:  # still in place, or wrapped in turn by someone else
        return
    _wrapped[name] = getattr(logging.Logger, name)
    setattr(logging.Logger, name, ours)


def _unwrap(name: str, ours: Any) -> None:
    # Wrapped again by another library: ours stays beneath it, passing through.
    if getattr(logging.Logger, name) is ours:
        setattr(logging.Logger, name, _wrapped.pop(name))


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    guest = _guest
    if guest is None:
        return _wrapped["isEnabledFor"](self, level)  # type: ignore[no-any-return]
    if self.disabled:
        return False
    try:
        who = self._cache[level]  # type: ignore[attr-defined]
    except KeyError:
        who = guest.decide(self, level)
    if who == MPTRACE:
        _for_mptrace.logger = self
    return bool(who)


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    guest = _guest
    if guest is None:
        _wrapped["callHandlers"](self, record)
        return
    level = record.levelno
    who = self._cache.get(level)  # type: ignore[attr-defined]
    if who is None:
        who = guest.decide(self, level)
    if who == OURS:
        guest.handler.handle(record)
        return
    if who == MPTRACE:
        made_for_us = getattr(_for_mptrace, "logger", None) is self
        _for_mptrace.logger = None
        if made_for_us:  # below the program's levels: mptrace's alone
            guest.handler.handle(record)
            return
    try:
        _wrapped["callHandlers"](self, record)
    finally:  # a handler of the program's that raises still leaves mptrace its copy
        if who & MPTRACE:
            guest.handler.handle(record)
