"""The end of a session: what still runs, and waiting for it the way Python does.

At interpreter exit Python first runs ``atexit`` hooks (mptrace's among
them), and only then the stdlib's own exit hook shuts down managers and
pools and joins non-daemon children. mptrace's hook does those steps itself
first, in the same order, so that it neither waits on a ``Manager`` that
only the stdlib would stop (a hang) nor stops the listener while a child
still logs (lost records): the stdlib's finalisers of priority ≥ 0, then
the non-daemon children, bounded by ``shutdown_timeout``.

Neither the exit nor leaving a ``with mptrace.init()`` block waits for a
server: a manager's process, a pool's or an executor's workers (loky's
too), which end only when their owner stops them, nor for a daemon. The
listener stays on for whatever streams are still open and ends by itself
when the last one closes, so what those processes log later still arrives.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing.process import BaseProcess
from typing import Any

_log = logging.getLogger("mptrace.session")


def _held_by_owners() -> set[int]:
    """Ids of the children an object of the program stops when it is done
    with them: a manager's server and a pool's workers (each named by a
    stdlib finaliser registered for exit), an executor's workers (held by
    its manager thread, the stdlib's or loky's).

    Found through their owners, not their targets: ``Process.start()``
    deletes ``_target`` (bpo-30775), so a started server cannot say what it runs.
    """
    found: set[int] = set()
    registry = getattr(multiprocessing.util, "_finalizer_registry", {})
    for finaliser in list(registry.values()):
        for arg in getattr(finaliser, "_args", None) or ():
            if isinstance(arg, BaseProcess):
                found.add(id(arg))
            elif isinstance(arg, list):  # a pool's workers, grown in place
                found.update(id(p) for p in list(arg) if isinstance(p, BaseProcess))
    for thread in threading.enumerate():
        processes = getattr(thread, "processes", None)
        if type(thread).__name__ == "_ExecutorManagerThread" and isinstance(
            processes, dict
        ):
            found.update(
                id(p) for p in list(processes.values()) if isinstance(p, BaseProcess)
            )
    return found


def finalise_stdlib() -> None:
    """Run the stdlib's exit finalisers (managers, pools) now, as it would next."""
    run = getattr(multiprocessing.util, "_run_finalizers", None)
    if run is None:  # pragma: no cover - a Python without it
        return
    try:
        run(0)
    except Exception as exc:  # the program's finalisers; its exit goes on
        _log.warning("a multiprocessing finaliser failed at exit: %r", exc)


def wait_children(bound: float) -> list[Any]:
    """Join the running non-daemon children within *bound* seconds in all.

    Returns those still running then. Servers (a manager's, a pool's or an
    executor's workers) are not waited for: they end when their owner stops
    them, which may be long after; the listener stays for their streams.
    """
    deadline = time.monotonic() + bound
    held = _held_by_owners()
    waiting = [
        p
        for p in multiprocessing.active_children()
        if not p.daemon and id(p) not in held
    ]
    for p in waiting:
        p.join(max(0.0, deadline - time.monotonic()))
    return [p for p in waiting if p.is_alive()]


def describe(processes: Iterable[Any]) -> str:
    return ", ".join(f"{p.name} (pid {p.pid})" for p in processes)


def say_still_running(processes: list[Any], bound: float) -> None:
    """The bound passed: name the children whose later records will be lost."""
    if not processes:
        return
    n = len(processes)
    sys.stderr.write(
        f"mptrace: warning: {n} child process{'es' if n > 1 else ''} still "
        f"running after {bound:g} s, when the session ended: "
        f"{describe(processes)}; {'their spans end' if n > 1 else 'its span ends'} "
        f"as running, what {'they log' if n > 1 else 'it logs'} until "
        f"{'they end' if n > 1 else 'it ends'} still arrives\n"
    )


def strangers() -> list[Any]:
    """Running children that do not take part in the session (started outside it)."""
    out = []
    for p in multiprocessing.active_children():
        state = p.__dict__.get("_mptrace")
        if state is None or state.config is None:
            out.append(p)
    return out


def report_strangers() -> None:
    """Name, through the funnel, the children mptrace could not follow."""
    found = strangers()
    if found:
        _log.warning(
            "%d child process%s not traced (started outside the session or "
            "before mptrace instrumented multiprocessing): %s",
            len(found),
            "es" if len(found) > 1 else "",
            describe(found),
        )
