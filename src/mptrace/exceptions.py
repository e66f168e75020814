"""Every exception mptrace raises itself::

MptraceError
├── ConfigurationError (also a ValueError): init() was given something it
│                        cannot use; raised at once, nothing started
└── ListenerError: the listener process could not be started
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "ListenerError", "MptraceError"]


class MptraceError(Exception):
    """Base class of mptrace's own exceptions."""


class ConfigurationError(MptraceError, ValueError):
    """A setting given to :func:`mptrace.init` is not one mptrace can use."""


class ListenerError(MptraceError, RuntimeError):
    """The listener process did not start, or said why it could not."""
