"""mptrace: lossless logging and tracing for programs that run across processes.

Importing mptrace configures nothing and starts nothing; :func:`init` does::

    import mptrace

    with mptrace.init(exporters=["console", "jsonl:run.jsonl"]):
        ...  # every log record of every participating process reaches one listener
"""

from __future__ import annotations

from . import sinks
from ._instrument import instrument, uninstrument
from ._joined import JoinedSession
from ._pool import Pool, ProcessPoolExecutor, get_context
from ._process import Process
from ._session import Session, get_logger, get_session, init, shutdown
from ._traced import traced
from ._version import __version__
from .exceptions import ConfigurationError, ListenerError, MptraceError

__all__ = [
    "ConfigurationError",
    "JoinedSession",
    "ListenerError",
    "MptraceError",
    "Pool",
    "Process",
    "ProcessPoolExecutor",
    "Session",
    "__version__",
    "get_context",
    "get_logger",
    "get_session",
    "init",
    "instrument",
    "shutdown",
    "sinks",
    "traced",
    "uninstrument",
]
