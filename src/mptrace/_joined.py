"""What ``init()`` returns where it does not start a session of its own."""

from __future__ import annotations


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
