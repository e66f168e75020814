"""``mptrace.get_logger``: structlog's logger, which a session funnels."""

from __future__ import annotations

from typing import Any


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """A structlog logger whose events reach the listener as dicts.

    Before :func:`init` (or with ``structlog=False``) it is a plain
    ``structlog.get_logger()``; bound values travel with every event.
    """
    import structlog

    args = (name,) if name is not None else ()
    return structlog.get_logger(*args, **initial_values)
