"""The end of a session: what still runs, and waiting for it the way Python does.

At interpreter exit Python first runs ``atexit`` hooks (mptrace's among
them), and only then the stdlib's own exit hook shuts down managers and
pools and joins non-daemon children. mptrace's hook does those steps itself
first, in the same order, so that it neither waits on a ``Manager`` that
only the stdlib would stop (a hang) nor stops the listener while a child
still logs (lost records): the stdlib's finalisers of priority ≥ 0, then
the non-daemon children, bounded by ``shutdown_timeout``. Leaving a ``with
mptrace.init()`` block waits for the children the program started itself,
but not for servers (a manager, an executor's workers) that end only when
their owner shuts them down.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import sys
import time
from collections.abc import Iterable
from typing import Any

_log = logging.getLogger("mptrace.session")


def _servers() -> list[Any]:
    """Targets of processes that serve until their owner stops them, of the
    modules the program imported (no module, no such process)."""
    found: list[Any] = []
    managers = sys.modules.get("multiprocessing.managers")
    if managers is not None:
        found.append(managers.BaseManager._run_server.__func__)
    executors = sys.modules.get("concurrent.futures.process")
    if executors is not None:
        found.append(executors._process_worker)
    pools = sys.modules.get("multiprocessing.pool")
    if pools is not None:
        found.append(pools.worker)
    return found


def is_server(process: Any) -> bool:
    """True for a manager's server process or a pool's or executor's worker."""
    target = getattr(process, "_target", None)
    return getattr(target, "__func__", target) in _servers()


def finalise_stdlib() -> None:
    """Run the stdlib's exit finalisers (managers, pools) now, as it would next."""
    run = getattr(multiprocessing.util, "_run_finalizers", None)
    if run is None:  # pragma: no cover - a Python without it
        return
    try:
        run(0)
    except Exception as exc:  # the program's finalisers; its exit goes on
        _log.warning("a multiprocessing finaliser failed at exit: %r", exc)


def wait_children(bound: float, servers: bool) -> list[Any]:
    """Join the running non-daemon children within *bound* seconds in all.

    Returns those still running then. *servers* False leaves out manager
    server processes and executor workers.
    """
    deadline = time.monotonic() + bound
    waiting = [
        p
        for p in multiprocessing.active_children()
        if not p.daemon and (servers or not is_server(p))
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
        f"running after {bound:g} s, when the session ended; what "
        f"{'they log' if n > 1 else 'it logs'} from now on goes to stderr: "
        f"{describe(processes)}\n"
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
