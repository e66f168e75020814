"""A traceback the program prints shows none of mptrace's frames.

``tracebacks_work.py`` raises, or is interrupted with ``KeyboardInterrupt``,
inside each kind of method mptrace replaces or wraps (a ``with lock:``, an
``Event.wait()``, ``Process.join()``, a full queue's ``put``, an ``@traced``
call, a pool or executor task, a ``Process.start()`` that cannot pickle its
target), catches it and prints its traceback; it runs plain and under
``mptrace.init()`` (with traced IPC). Under mptrace no frame of the package
is in any of them, and the program's own frames are those of the plain run.
Under fork, spawn and forkserver.
"""

from __future__ import annotations

import os
import subprocess
import sys

import mptrace

WORK = os.path.join(os.path.dirname(__file__), "tracebacks_work.py")
PACKAGE = os.path.dirname(os.path.abspath(mptrace.__file__)) + os.sep
TB = "Traceback (most recent call last):"


def _printed(method: str, mode: str) -> dict[str, list[str]]:
    """Each case's traceback lines, by case."""
    done = subprocess.run(
        [sys.executable, WORK, method, mode],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "MPTRACE_TRACE_IPC": ""},
    )  # fmt: skip
    out: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in done.stdout.splitlines():
        if line.startswith("== "):
            lines = out.setdefault(line[3:], [])
        else:
            lines.append(line)
    return out


def _frames(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip().startswith('File "')]


def test_no_frame_of_mptrace_in_what_the_program_prints(start_method):
    plain, traced = _printed(start_method, "off"), _printed(start_method, "on")
    assert list(traced) == list(plain)
    raised = [case for case, lines in plain.items() if lines]
    assert len(raised) >= 8, plain  # all but the unpicklable target under fork
    for case in plain:
        ours = [f for f in _frames(traced[case]) if PACKAGE in f]
        # Python 3.10's bare ``raise`` keeps the frame that re-raises: one a
        # traceback (``_participant.frames``); from 3.11, none.
        allowed = 0 if sys.version_info >= (3, 11) else plain[case].count(TB)
        assert len(ours) <= allowed, (case, traced[case])
        program = [f for f in _frames(plain[case]) if WORK in f]
        assert [f for f in _frames(traced[case]) if WORK in f] == program, case
        # The same exception, as the plain program saw it.
        assert traced[case][-1:] == plain[case][-1:], case
