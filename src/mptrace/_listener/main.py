"""The listener process's entry point: its signals, its start, its end.

The listener stops when its owner says so (a ``shutdown`` frame) or dies,
never on a signal meant for the program: ``SIGINT`` from a terminal,
``SIGTERM`` from ``timeout``, ``kill -TERM -PGID``, systemd or Kubernetes,
and ``SIGHUP`` from a closed terminal reach the whole process group. Were the
listener to die with the program, every record still in a pipe, and every
"stopping" record the program's own handlers log, would be lost. So it
ignores them, drains every stream that is still open, writes and syncs its
files, removes the session folder if its owner is gone, and exits.

When the owner's session ends while other processes still write (a
manager's server, a reusable executor's workers), the listener stays on
for them, and removes the session folder itself when the last one is done.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import sys

from mptrace._listener.router import Router
from mptrace._listener.transport import Transport
from mptrace._schema import profile as _profile
from mptrace._schema.config import ListenerConfig
from mptrace.exceptions import ConfigurationError

#: The signals a process group gets when it is asked to stop.
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _remove_session_dir(cfg: ListenerConfig) -> None:
    """The owner died without cleaning up: its private directory goes with us."""
    if cfg.session_dir and os.path.basename(cfg.session_dir).startswith("mptrace-"):
        shutil.rmtree(cfg.session_dir, ignore_errors=True)


def bootstrap() -> None:
    """Entry point: ``python -c '...; bootstrap()' LISTEN_FD STATUS_FD``.

    Standard input carries ``(sys.path, pickled (config, key))``; the key never
    appears on a command line or in the environment. The listener answers
    ``ok`` on the status pipe (then one ``f`` per flush request), or
    ``config:`` and a sentence when a sink cannot be built, or the reason it
    cannot start.
    """
    _profile.start()
    _profile.mark("listener imports")
    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    listen_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    try:
        path, inner = pickle.loads(sys.stdin.buffer.read())
        sys.path[:] = [p for p in path if p] + [p for p in sys.path if p not in path]
        cfg, authkey = pickle.loads(inner)
        transport = Transport(socket.socket(fileno=listen_fd), authkey, cfg.owner_pid)
        router = Router(cfg, transport, status_fd)
    except BaseException as exc:
        prefix = "config:" if isinstance(exc, ConfigurationError) else ""
        os.write(status_fd, f"{prefix}{type(exc).__name__}: {exc}".encode())
        os.close(status_fd)
        raise SystemExit(1) from None
    _profile.mark("listener sinks")
    os.write(status_fd, b"ok\n")
    try:
        transport.run(router)
    except KeyboardInterrupt:
        pass
    _profile.mark("listener drain")
    router.finish()
    if transport.owner_gone or transport.lingering:  # no owner left to do it
        _remove_session_dir(cfg)
    _profile.write("listener", "listener finish")
    if _own_code_only(cfg):
        # Every sink is written, flushed and closed: freeing each module as
        # the interpreter ends would only hold up the owner, who waits for
        # this exit. A sink or processor of the program's may still hold
        # something that only its teardown writes: with one, the exit is whole.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _own_code_only(cfg: ListenerConfig) -> bool:
    """Only mptrace's own sinks run here, and no processor of the program's."""
    return not cfg.processors and all(s.kind != "user" for s in cfg.exporters)
