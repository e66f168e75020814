"""Where ``init()`` joins a session instead of starting one, and what it
returns then."""

from __future__ import annotations

import os
import sys
from typing import Any


def joins_another(session: Any) -> bool:
    """True where ``init()`` joins a running session (this process's *session*
    or its parent's) rather than starting its own.

    Under ``mptrace run`` the runner owns the session. A spawn or forkserver
    child imports the parent's main module as ``__mp_main__``, running any
    top-level ``init()`` again; a fork child inherits the parent's session
    object. A child whose parent runs no session (it never joined one) gets a
    session of its own. A Python program that joined as a stage of the run
    (``_instrument.stage``) joins it again.
    """
    # A program joins as a stage from its start-up hook, which imports the
    # module; where it is not imported, this program is no stage.
    stage = sys.modules.get("mptrace._instrument.stage")
    if stage is not None and stage.joined():
        return True
    mine = session is not None and session.owner_pid == os.getpid()
    if mine and session.runner and session.active:
        return True
    main = sys.modules.get("__main__")
    if getattr(main, "__name__", None) == "__mp_main__":
        import multiprocessing.process as mp_process

        if type(mp_process.current_process()).__name__ == "_MainProcess":
            return True  # the parent's main module being imported again
        from mptrace._participant import participant as _participant

        return _participant.current() is not None  # else: a session of its own
    return session is not None and not mine


class JoinedSession:
    """What :func:`init` returns where a session already runs: the outer one.

    In a child process, the child already funnels into its parent's listener;
    under ``mptrace run``, the program's own ``init()`` joins the runner's
    session (its arguments are not used). This handle starts nothing and
    shutting it down does nothing, so code shared by parent and children may
    call ``init()``.
    """

    active = False
    listener_pid = None

    def shutdown(self, timeout: float | None = None) -> None:
        """Nothing to do: the parent owns the session."""

    def __enter__(self) -> JoinedSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def __repr__(self) -> str:
        return "<mptrace.JoinedSession (the parent owns the session)>"
