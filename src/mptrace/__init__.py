"""mptrace: lossless logging and tracing for programs that run across processes.

Importing mptrace configures nothing and starts nothing; :func:`init` does::

    import mptrace

    with mptrace.init(exporters=["console", "jsonl:run.jsonl"]):
        ...  # every log record of every participating process reaches one listener

``import mptrace`` loads this module alone; each name below loads its module
the first time it is used (PEP 562), so a program pays for what it uses, and
the listener and the ``mptrace`` command start without the rest.
"""

from __future__ import annotations

import importlib

from mptrace._version import __version__
from mptrace.exceptions import ConfigurationError, ListenerError, MptraceError

TYPE_CHECKING = False  # typing itself costs an import mptrace need not pay
if TYPE_CHECKING:
    from typing import Any

    from mptrace import sinks
    from mptrace._instrument.pool import Pool, ProcessPoolExecutor, get_context
    from mptrace._instrument.process import Process
    from mptrace._instrument.stdlib import instrument, uninstrument
    from mptrace._instrument.traced import traced
    from mptrace._session.joined import JoinedSession
    from mptrace._session.logger import get_logger
    from mptrace._session.session import Session, get_session, init, shutdown

#: Where each public name lives.
_HOMES = {
    "sinks": "",
    "instrument": "_instrument.stdlib",
    "uninstrument": "_instrument.stdlib",
    "JoinedSession": "_session.joined",
    "Pool": "_instrument.pool",
    "ProcessPoolExecutor": "_instrument.pool",
    "get_context": "_instrument.pool",
    "Process": "_instrument.process",
    "Session": "_session.session",
    "get_logger": "_session.logger",
    "get_session": "_session.session",
    "init": "_session.session",
    "shutdown": "_session.session",
    "traced": "_instrument.traced",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mptrace' has no attribute {name!r}")
    if home:
        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    else:
        value = importlib.import_module(f"{__name__}.{name}")
    globals()[name] = value  # the next use is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


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
