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

from ._version import __version__
from .exceptions import ConfigurationError, ListenerError, MptraceError

TYPE_CHECKING = False  # typing itself costs an import mptrace need not pay
if TYPE_CHECKING:
    from typing import Any

    from . import sinks
    from ._instrument import instrument, uninstrument
    from ._joined import JoinedSession
    from ._pool import Pool, ProcessPoolExecutor, get_context
    from ._process import Process
    from ._session import Session, get_logger, get_session, init, shutdown
    from ._traced import traced

#: Where each public name lives.
_HOMES = {
    "sinks": "",
    "instrument": "_instrument",
    "uninstrument": "_instrument",
    "JoinedSession": "_joined",
    "Pool": "_pool",
    "ProcessPoolExecutor": "_pool",
    "get_context": "_pool",
    "Process": "_process",
    "Session": "_session",
    "get_logger": "_session",
    "get_session": "_session",
    "init": "_session",
    "shutdown": "_session",
    "traced": "_traced",
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
