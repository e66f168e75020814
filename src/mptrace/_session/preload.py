"""Under forkserver, every child is forked from one server process: what the
server imported, a child need not import again.

``init()`` adds mptrace and what a child imports to join a session
(OpenTelemetry's SDK, structlog, psutil) to the fork server's preload list,
after the program's own (``__main__`` by default). It takes effect when the
server starts, which is at the first forkserver child; a server already
running keeps what it has.
"""

from __future__ import annotations

#: What a child imports to take part in a session.
CHILD_MODULES = (
    "mptrace",
    "mptrace._instrument.lifecycle",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.resources",
    "structlog",
    "psutil",
)


def preload_in_forkserver() -> None:
    """Append CHILD_MODULES to the fork server's preload list. Never raises."""
    try:
        from multiprocessing import forkserver

        server = forkserver._forkserver
        modules = list(getattr(server, "_preload_modules", ["__main__"]))
        missing = [m for m in CHILD_MODULES if m not in modules]
        if missing:
            server.set_forkserver_preload(modules + missing)
    except Exception:  # no forkserver here, or its insides changed: no preload
        pass
