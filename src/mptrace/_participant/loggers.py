"""Every logger: records of loggers that stop short of the root reach the funnel too.

mptrace's handler sits on the root logger, so a logger with
``propagate=False`` (``multiprocessing.get_logger()`` and
``log_to_stderr()`` among them, and many a library's) would keep its
records from it. While a participant is installed, ``Logger.callHandlers``
first does what it always does (the program's own handlers, untouched and
called once), then, for a record whose walk up the hierarchy stopped before
the root, hands it to the funnel's handler, at the session's level. A
record that reached the root went through the funnel's handler there, so
nothing arrives twice.
"""

from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_original = logging.Logger.callHandlers
#: (handler, level) while installed.
_target: tuple[logging.Handler, int] | None = None


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    _original(self, record)
    logger: logging.Logger | None = self
    while logger is not None and logger.propagate:
        logger = logger.parent
    target = _target
    if logger is not None and target is not None and record.levelno >= target[1]:
        target[0].handle(record)


def install(handler: logging.Handler, level: int) -> None:
    """Send records of non-propagating loggers to *handler* too."""
    global _target
    with _lock:
        _target = (handler, level)
        logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]


def uninstall(handler: logging.Handler) -> None:
    """Undo :func:`install`, if *handler* is still the one installed."""
    global _target
    with _lock:
        if _target is not None and _target[0] is handler:
            _target = None
            logging.Logger.callHandlers = _original  # type: ignore[method-assign]
