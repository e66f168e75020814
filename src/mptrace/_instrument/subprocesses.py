"""Programs started with ``subprocess``: a process span each, and its exit.

The parent side of a pipeline's stages. ``subprocess.Popen._execute_child``
is replaced (through ``stdlib``'s table) so that, in a session with tracing
on, each program started gets a span ``process <name>`` under the span
current at the call, and its own ``TRACEPARENT``: a Python program that joins
the session (``_instrument.stage``) takes that span as its process span, so
its records, pool workers and children fall under it, in the run's trace.

The exit is observed where the program observes it: ``Popen._handle_exitstatus``,
through which every ``wait()``, ``poll()``, ``communicate()`` and
``subprocess.run`` reads the status ``waitpid`` gave. That status is the
truth (a code, or the signal that killed the program, ``os._exit`` and
SIGKILL included), which the child's own exit hooks cannot see: Python keeps
no exit code for ``atexit``, and a killed process runs none. Nothing here
reaps a child or starts a thread: the program's own ``wait`` stays the one
that reaps, so its ``returncode`` is what it would be without mptrace. A
program never waited for is looked at, without reaping it, when the session
ends (:func:`end_open`).
"""

from __future__ import annotations

import inspect
import os
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from mptrace._instrument import tracing as _tracing
from mptrace._participant import participant as _participant
from mptrace._participant.sources import process_name
from mptrace._participant.stream import write_stderr
from mptrace._schema import events as _events
from mptrace._schema import joinfile as _joinfile
from mptrace._schema.joinfile import JOIN_FILE, JOIN_VAR, OWN_VAR

#: The folder whose ``sitecustomize`` makes a Python program join.
BOOT = _joinfile.BOOT
#: How a stage's start is named in lifecycle records and span attributes.
START_METHOD = "subprocess"
_INTERPRETER = ("python", "pypy")

_lock = threading.Lock()
#: pid → (span, name) of each program started and not yet seen to end.
_open: dict[int, tuple[Any, str]] = {}


def program_name(args: Any, shell: bool) -> str:
    """A short name for a command: the program, or the script a Python runs.

    Only names, never arguments: a command line may hold a secret.
    """
    try:
        if isinstance(args, (str, bytes, os.PathLike)):
            args = [args]
        words = [os.fsdecode(a) for a in args]
        if shell and words:  # the command line is the first item
            words = shlex.split(words[0])
    except (TypeError, ValueError):
        return "subprocess"
    if not words:
        return "subprocess"
    name = os.path.basename(words[0])
    if name.startswith(_INTERPRETER):
        for i, word in enumerate(words[1:], 1):
            if word == "-m" and i + 1 < len(words):
                return words[i + 1]
            if word == "-c":
                return f"{name} -c"
            if not word.startswith("-"):
                return os.path.basename(word)
    return name


def _positions(method: Callable[..., Any]) -> tuple[int, int]:
    """Where ``env`` and ``shell`` sit among ``_execute_child``'s positional
    arguments (the same from 3.9 to 3.13, looked up all the same)."""
    names = list(inspect.signature(method).parameters)
    return names.index("env") - 1, names.index("shell") - 1  # less self


def execute_child(original: Callable[..., None]) -> Callable[..., None]:
    """``Popen._execute_child``: the session's hook, a span, its ``TRACEPARENT``."""
    at, shell_at = _positions(original)

    def _execute_child(self: Any, *args: Any) -> None:
        part = _participant.current()
        if part is None or len(args) <= max(at, shell_at) or _own(args[at]):
            return original(self, *args)
        env = program_env(args[at], part.config.address)
        tracer = _tracing.get_tracer() if part.config.tracing else None
        if tracer is None:
            return original(self, *args[:at], env, *args[at + 1 :])
        name = program_name(args[0], bool(args[shell_at]))
        span = tracer.start_span(
            f"process {name}",
            attributes={
                "mptrace.span": "process",
                "mptrace.process.name": name,
                "mptrace.start_method": START_METHOD,
                "process.parent_pid": os.getpid(),
            },
        )
        env.update({k.upper(): v for k, v in _tracing.carrier(span).items()})
        try:
            original(self, *args[:at], env, *args[at + 1 :])
        except BaseException as exc:
            _tracing.end_span(span, exc)
            raise
        _started(self.pid, span, name)

    return _execute_child


def _own(env: Any) -> bool:
    """An interpreter of mptrace's own (a listener taking over): not a program."""
    return isinstance(env, Mapping) and env.get(OWN_VAR) == "listener"


def program_env(given: Any, address: str) -> dict[Any, Any]:
    """The environment a program starts with: *given* (or this process's),
    naming this process's session to a Python program.

    The variables are set here too, not only in the owner's environment at
    ``init()``: a forkserver child has the fork server's environment, which
    may be older than the session.
    """
    env = dict(os.environ if given is None else given)
    path = os.path.join(os.path.dirname(address), JOIN_FILE)
    if not os.path.exists(path):  # this session does not reach programs
        if given is None:
            env.pop(JOIN_VAR, None)
        return env
    if given is None or JOIN_VAR in env:
        env[JOIN_VAR] = path
        entries = [e for e in str(env.get("PYTHONPATH", "")).split(os.pathsep) if e]
        if BOOT not in entries:
            env["PYTHONPATH"] = os.pathsep.join([BOOT, *entries])
    return env


def handle_exitstatus(original: Callable[..., None]) -> Callable[..., None]:
    """``Popen._handle_exitstatus``: the program's exit, as ``waitpid`` said it."""

    def _handle_exitstatus(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        code = self.returncode
        if code is not None and self.pid in _open:
            try:
                _ended(self.pid, code)
            except Exception as exc:  # the program's wait() returns all the same
                write_stderr(f"mptrace: warning: could not record an exit: {exc!r}\n")

    return _handle_exitstatus


def _started(pid: int, span: Any, name: str) -> None:
    started = time.time_ns()
    span.set_attribute("process.pid", pid)
    span.add_event("started", {"process.pid": pid}, timestamp=started)
    with _lock:
        _open[pid] = (span, name)
    _participant.send(_lifecycle("started", pid, name, span, ts=started))


def _ended(pid: int, code: int | None) -> None:
    """Close the program's span with its exit; once, whoever sees it first."""
    with _lock:
        entry = _open.pop(pid, None)
    if entry is None:
        return
    span, name = entry
    end_ns = time.time_ns()
    if code is None:
        span.add_event("session ended while running")
        span.end(end_time=end_ns)
        return
    sig = _events.signal_name(code)
    attributes: dict[str, Any] = {"process.exit.code": code}
    if sig:
        attributes["mptrace.exit.signal"] = sig
    span.set_attributes(attributes)
    if code != 0:
        what = f"killed by {sig}" if sig else f"exited with code {code}"
        span.set_status(trace.Status(trace.StatusCode.ERROR, what))
    span.add_event("exited", attributes, timestamp=end_ns)
    span.end(end_time=end_ns)
    _participant.send(
        _lifecycle("exited", pid, name, span, ts=end_ns, exitcode=code, signal=sig)
    )


def end_open() -> None:
    """The session ends: each program not yet waited for is looked at.

    One that has exited is reported with its status, read without reaping it
    (``waitid`` with ``WNOWAIT``), so the program's own ``wait`` still works;
    one still running is closed as such.
    """
    for pid in list(_open):
        _ended(pid, _peek(pid))


def _peek(pid: int) -> int | None:
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (AttributeError, OSError):  # not waitable here, or already reaped
        return None
    if result is None:
        return None
    if result.si_code == os.CLD_EXITED:
        return int(result.si_status)
    return -int(result.si_status)  # killed: as Popen.returncode says it


def _lifecycle(
    transition: str, pid: int, name: str, span: Any, **fields: Any
) -> _events.Event:
    event = _events.lifecycle_event(
        transition, pid, name, START_METHOD, process_name(), fields.pop("ts", None)
    )
    ctx = span.get_span_context()
    if ctx.is_valid:
        event["trace_id"] = _events.hex_id(ctx.trace_id, 32)
        event["span_id"] = _events.hex_id(ctx.span_id, 16)
    event.update(fields)
    return event


#: For ``stdlib``'s table: (class, method, replacement maker).
REPLACEMENTS: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("Popen", "_execute_child", execute_child),
    ("Popen", "_handle_exitstatus", handle_exitstatus),
]
