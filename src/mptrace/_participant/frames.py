"""mptrace's own frames, out of the tracebacks the program sees.

A ``KeyboardInterrupt`` that lands while a replaced method blocks (a ``with
lock:``, an ``Event.wait()``, a ``put`` on a full queue), or an error the
stdlib's method raised inside it, passes through mptrace's frames on its way
to the program. The program prints it as if mptrace were not there:
:func:`hide` takes those frames out, in the replacement's ``except`` before
a bare ``raise``. From Python 3.11 a bare ``raise`` keeps the traceback set
on the exception, so the replacement's own frame goes too; on 3.10 it keeps
the traceback it caught, whose first entry (the replacement's frame) stays,
and only the frames below it go.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: The package's folder: a frame whose file is under it is mptrace's.
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def ours(tb: TracebackType, also: frozenset[str] = frozenset()) -> bool:
    """The frame of *tb* is mptrace's (or in a file of *also*)."""
    path = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return path in also or path.startswith(PACKAGE)


def without_ours(
    tb: TracebackType | None,
    exc: BaseException,
    also: frozenset[str] = frozenset(),
    own_errors: bool = True,
) -> TracebackType | None:
    """*tb* less mptrace's frames, relinked in place: every entry, ours too,
    skips to the next entry that is not ours. With *own_errors*, an
    ``Exception`` raised in mptrace's own code (a bug of ours, whose frames
    say where) keeps them all."""
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return None
    if own_errors and isinstance(exc, Exception) and ours(frames[-1], also):
        return frames[0]
    after: TracebackType | None = None
    for one in reversed(frames):
        one.tb_next = after
        if not ours(one, also):
            after = one
    return after


def hide(exc: BaseException) -> None:
    """Take mptrace's frames out of *exc*'s traceback (unless it is an error
    of mptrace's own code); a bare ``raise`` follows."""
    try:
        exc.__traceback__ = without_ours(exc.__traceback__, exc)
    except Exception:  # never in the way of the program's exception
        pass


def hiding(func: Callable[..., Any]) -> Callable[..., Any]:
    """*func*, whose exceptions reach its caller without mptrace's frames."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            hide(exc)
            raise

    return call
