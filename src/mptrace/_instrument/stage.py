"""A Python program started by a participant joins the session: a stage.

``subprocess.run(["python", "stage.py"])``, a shell's ``python stage.py``, a
pipeline's next step: a fresh interpreter that shares only the environment
with the process that started it. While a session runs, the environment
holds the join file's path (``MPTRACE_JOIN``, see ``_schema.joinfile``) and,
first on ``PYTHONPATH``, a folder whose ``sitecustomize`` calls :func:`join`
as the interpreter starts, before the program's first line, as coverage.py
and ``opentelemetry-instrument`` reach child interpreters.

The stage is then a participant like a ``multiprocessing`` child: its
records, its own pools and children, its spans under the process span its
starter made for it (``TRACEPARENT``, set per program by
``_instrument.subprocesses``), in the run's one trace. At exit it says how it
finished (returned, or the exception that ended it) and closes its stream;
the starter records the exit code, which only ``waitpid`` knows.

Interpreters that are multiprocessing's own (a spawn child, the fork server,
the resource tracker) are left alone: they join through the process object
they unpickle, or not at all.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from typing import Any

from mptrace._instrument import root as _root
from mptrace._instrument import stdlib as _stdlib
from mptrace._instrument import subprocesses as _subprocesses
from mptrace._instrument import tracing as _tracing
from mptrace._participant import participant as _participant
from mptrace._participant.plain import exception_dict
from mptrace._participant.sources import process_name
from mptrace._schema import events as _events
from mptrace._schema import joinfile as _joinfile

_log = logging.getLogger("mptrace.process")
#: The code multiprocessing runs in the interpreters it starts itself.
_MULTIPROCESSING = ("from multiprocessing.", "from multiprocess.")
#: This process's participant, when it joined as a stage.
_joined: list[_participant.Participant] = []


def joined() -> bool:
    """True in a program that joined its starter's session as a stage."""
    return bool(_joined) and _joined[0].pid == os.getpid()


#: The modules loky (joblib's workers) runs in the interpreters it starts:
#: a worker joins as its process object's ``_bootstrap`` runs, as
#: multiprocessing's do, and its resource tracker is loky's own.
_LOKY = ("joblib.externals.loky.backend.", "loky.backend.")


def _multiprocessings_own() -> bool:
    if "--multiprocessing-fork" in sys.argv:
        return True
    argv = sys.orig_argv
    if "-c" in argv[:-1]:
        code = argv[argv.index("-c") + 1]
        return code.startswith(_MULTIPROCESSING + tuple(f"from {m}" for m in _LOKY))
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].startswith(_LOKY)
    return False


def join() -> bool:
    """Join the session the environment names, if there is one; never raises.

    Returns True when this interpreter joined.
    """
    path = os.environ.get(_joinfile.JOIN_VAR)
    if not path or _participant.current() is not None or _multiprocessings_own():
        return False
    config = _joinfile.read(path)
    if config is None:  # the session has ended, or is another mptrace's
        return False
    try:
        part = _participant.join(config, os.getppid())
        _joined[:] = [part]
        if config.instrument:
            _stdlib.instrument(ipc=config.trace_ipc)
        if config.tracing:
            carrier = _root.carrier_from_env()
            part.process_span_context = _tracing.span_context_of(carrier)
            _tracing.attach(carrier)  # for the stage's whole life
        part.send(_lifecycle("running", part))
    except Exception as exc:  # never stop the program for telemetry
        sys.stderr.write(f"mptrace: warning: could not join the session: {exc!r}\n")
        return False
    return True


def leave() -> None:
    """At the stage's exit: how it finished; its children; its stream closed.

    Runs as the interpreter's last exit hook, after multiprocessing's own has
    joined the stage's pools and children.
    """
    if not joined():
        return
    part = _joined.pop()
    try:
        exc: Any = getattr(sys, "last_value", None)
        if isinstance(exc, BaseException):
            _log.error("%s raised an uncaught exception", _name(), exc_info=exc)
        _subprocesses.end_open()
        part.stop_monitor()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        scale = 1 if os.uname().sysname == "Darwin" else 1024  # KiB on Linux
        fields: dict[str, Any] = {
            "outcome": "raised" if exc is not None else "returned",
            "cpu_user_s": usage.ru_utime,
            "cpu_system_s": usage.ru_stime,
            "peak_rss_bytes": usage.ru_maxrss * scale,
        }
        if isinstance(exc, BaseException):
            fields["exc"] = exception_dict(exc)
        part.send(_lifecycle("finished", part, **fields))
    finally:
        _participant.leave(part)


def _name() -> str:
    """The program's name, as its starter's span names it."""
    return _subprocesses.program_name(sys.orig_argv or sys.argv, False)


def _lifecycle(transition: str, part: Any, **fields: Any) -> _events.Event:
    event = _events.lifecycle_event(
        transition, part.pid, _name(), _subprocesses.START_METHOD, process_name()
    )
    ctx = part.process_span_context
    if ctx is not None and ctx.is_valid:
        event["trace_id"] = _events.hex_id(ctx.trace_id, 32)
        event["span_id"] = _events.hex_id(ctx.span_id, 16)
    event.update(fields)
    return event
