"""Whether to colour what goes to a terminal: one rule for the console and the
``mptrace`` command. ``NO_COLOR`` (no-color.org) wins, then ``FORCE_COLOR``
(force-color.org), then whether the stream is a terminal."""

from __future__ import annotations

import os
from typing import TextIO


def use_colours(stream: TextIO) -> bool:
    """Colours on a terminal; ``NO_COLOR``, then ``FORCE_COLOR``, decide first."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
