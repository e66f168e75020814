"""Starting the listener process: its socket, its interpreter, its first answer.

``init()`` binds the session's ``AF_UNIX`` socket in a private 0700 folder,
then starts ``python -c ...`` with the listening socket and a status pipe as
inherited descriptors, first thing: the listener's interpreter starts and
imports while the program checks its configuration, which then goes to the
listener's stdin (the key is never on a command line). A fresh interpreter
is what the spawn start method gives, without its one surprise: spawn
re-imports the program's ``__main__``, and a script whose ``init()`` is not
under a main guard would start listeners without end. The listener answers
``ok`` on the status pipe, or why not.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mptrace._schema import folders as _folders
from mptrace._schema import profile as _profile
from mptrace._schema.joinfile import OWN_VAR, without_boot
from mptrace._session import echo as _echo
from mptrace.exceptions import ConfigurationError, ListenerError

if TYPE_CHECKING:  # the listener starts before the configuration is built
    from mptrace._schema.config import ChildConfig, ListenerConfig

#: A started listener: the relay of its stderr, the process, its status pipe.
Launched = tuple["_echo.StderrRelay | None", tuple[subprocess.Popen[bytes], int]]

#: Seconds ``init`` waits for the listener to say it is ready.
LISTENER_START_TIMEOUT = 60.0
#: The folder that holds the ``mptrace`` package, for the listener's ``sys.path``.
_PACKAGE_PARENT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


#: Seconds beyond ``shutdown_timeout`` that shutdown gives the listener to hand
#: what is queued to its exporters (``_listener.otlp.FLUSH_LIMIT`` plus a margin).
EXPORT_GRACE = 7.0
#: Listeners that outlived their session's shutdown for processes still
#: writing: reaped by the next init() once they have ended.
lingering: list[subprocess.Popen[bytes]] = []
#: A session folder whose owner is dead is removed by the next session once
#: it is this many seconds old (its listener drains for a few seconds at most).
STALE_AFTER = 30.0


def make_dir() -> str:
    """A new private folder for one session (mode 0700), named after its owner.

    Folders left by sessions whose whole process group was SIGKILLed (nothing
    ran to remove them) are removed first.
    """
    base = tempfile.gettempdir()
    if len(base) > 60:  # AF_UNIX paths are limited to ~100 bytes
        base = "/tmp"
    _sweep(base)
    return tempfile.mkdtemp(prefix=_folders.name_prefix(os.getpid()), dir=base)


def _sweep(base: str) -> None:
    now = time.time()
    for entry, owner, info in _folders.mine(base):
        if (
            stat.S_ISDIR(info.st_mode)
            and now - info.st_mtime >= STALE_AFTER
            and not _folders.alive(owner)
        ):
            shutil.rmtree(entry.path, ignore_errors=True)


def begin(address: str) -> Launched:
    """Start the listener; where sys.stderr is not fd 2, with a relay that
    brings the listener's stderr to it."""
    return _echo.start_with_relay(lambda fd: start_listener(address, fd))


def start_listener(
    address: str, stderr: int | None = None, replace: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the listener on a socket bound at *address*; return it and the
    read end of its status pipe, on which :func:`confirm` waits for its
    answer once :func:`send_config` has given it its configuration.

    *stderr* is a file descriptor for the listener's stderr (the program's
    own when None). With *replace* (a listener taking over from one that
    died), the socket is bound beside *address* and renamed over it in one
    step: a writer never finds no address.
    """
    lsock = _bind(address + ".new" if replace else address)
    status_r, status_w = os.pipe()
    try:
        if replace:
            os.replace(address + ".new", address)
        proc = _spawn(lsock, status_w, stderr)
    except BaseException:
        os.close(status_r)
        raise
    finally:
        lsock.close()
        os.close(status_w)
    _profile.mark("listener start")
    return proc, status_r


def send_config(
    proc: subprocess.Popen[bytes], cfg: ListenerConfig, child: ChildConfig
) -> None:
    """Write the listener's configuration and key to its stdin."""
    payload = pickle.dumps((list(sys.path), pickle.dumps((cfg, child.authkey))))
    assert proc.stdin is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:  # it died already: confirm() says why
        pass


def confirm(proc: subprocess.Popen[bytes], status_r: int) -> None:
    """Wait for the listener's ``ok``; kill it and raise if it does not come.

    Called as late as ``init()`` can: the program's own set-up runs while the
    listener's interpreter starts.
    """
    try:
        _await(status_r)
    except BaseException:
        kill(proc)
        os.close(status_r)
        raise


def stop_unstarted(launched: Launched) -> None:
    """Stop a listener that never got its configuration (init() failed first)."""
    relay, (proc, status_r) = launched
    kill(proc)
    if proc.stdin is not None:
        proc.stdin.close()
    os.close(status_r)
    if relay is not None:
        relay.close()


def wait(proc: subprocess.Popen[bytes], bound: float, status_r: int | None) -> bool:
    """Wait *bound* seconds for the listener to stop or to say ``d``, then
    kill it, saying so.

    ``d`` on the status pipe: everything so far is in the sinks, and the
    listener stays on for processes that still write (a manager's server, a
    reusable executor's workers); it then stops by itself when the last of
    their streams closes. Returns True in that case. On a pidfd where there
    is one: ``Popen.wait(timeout)`` polls with sleeps that add up to ~15 ms
    past the listener's exit.
    """
    deadline = time.monotonic() + bound
    watched = [] if status_r is None else [status_r]
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None  # the status pipe's end says it: it closes at the exit
    try:
        while watched or pidfd is not None:
            left = deadline - time.monotonic()
            fds = watched + ([] if pidfd is None else [pidfd])
            ready = select.select(fds, [], [], max(0.0, left))[0] if left > 0 else []
            if not ready or pidfd in ready:
                break
            data = os.read(status_r, 64) if status_r is not None else b""
            if b"d" in data:
                return True
            if not data:  # the listener closed it: it is exiting
                watched = []
                if pidfd is None:
                    break
    finally:
        if pidfd is not None:
            os.close(pidfd)
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        sys.stderr.write(
            f"mptrace: warning: the listener did not stop within {bound:.0f} s; "
            "killed it.\n"
        )
        kill(proc)
    return False


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _bind(path: str) -> socket.socket:
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    os.chmod(path, 0o600)
    lsock.listen(1024)
    return lsock


def _spawn(
    lsock: socket.socket, status_w: int, stderr: int | None = None
) -> subprocess.Popen[bytes]:
    code = (
        f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
        "from mptrace._listener.main import bootstrap; bootstrap()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lsock.fileno()), str(status_w)],
        stdin=subprocess.PIPE,
        stderr=stderr,
        pass_fds=(lsock.fileno(), status_w),
        close_fds=True,
        env=listener_env(os.environ),
    )
    return proc


#: The folder of OpenTelemetry's ``sitecustomize`` that ``opentelemetry-instrument``
#: puts on ``PYTHONPATH``.
_AUTO_INSTRUMENTATION = os.path.join(
    "opentelemetry", "instrumentation", "auto_instrumentation"
)


def listener_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The program's environment, less OpenTelemetry's auto-instrumentation
    and mptrace's own start-up hook (the listener joins no session).

    Under ``opentelemetry-instrument`` every interpreter would configure the
    SDK and instrument its libraries before running anything; in the listener
    that would only cost time and could trace its own exports. The listener's
    ``sys.path`` comes from the program on stdin, so ``PYTHONPATH`` loses nothing.
    """
    env = without_boot(environ)
    entries = env.get("PYTHONPATH", "").split(os.pathsep)
    kept = [e for e in entries if not e.rstrip(os.sep).endswith(_AUTO_INSTRUMENTATION)]
    if kept != entries:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    env[OWN_VAR] = "listener"
    return env


def _await(status_r: int) -> None:
    answer = b""
    ready = True
    while not answer.endswith(b"\n"):
        ready = bool(select.select([status_r], [], [], LISTENER_START_TIMEOUT)[0])
        chunk = os.read(status_r, 65536) if ready else b""
        if not chunk:
            break
        answer += chunk
    if answer == b"ok\n":
        return
    why = answer.decode("utf-8", "replace") or "it said nothing"
    if why.startswith("config:"):
        raise ConfigurationError(why.partition(": ")[2] or why)
    if not ready:
        why = f"it did not answer within {LISTENER_START_TIMEOUT:.0f} s"
    raise ListenerError(f"The mptrace listener process did not start: {why}")
