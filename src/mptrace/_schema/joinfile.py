"""The join file: how a child interpreter finds the session it is part of.

A program a participant starts with ``subprocess`` (directly, through a
shell, or a stage of a pipeline) is a fresh interpreter that carries nothing
of the session but its environment. The owner writes the session's
:class:`ChildConfig` here, as JSON, in the session's private 0700 folder with
mode 0600, and puts only the file's path in the environment
(``MPTRACE_JOIN``): the key is never in an ``argv`` or in a place another
user can read. The file goes with the folder when the session ends, so a
program started later finds nothing and runs on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # read() imports it: the owner starts its listener first
    from mptrace._schema.config import ChildConfig

#: The variable that holds the join file's path.
JOIN_VAR = "MPTRACE_JOIN"
#: The join file's name, in the session's folder (beside its socket).
JOIN_FILE = "join.json"
#: Set in the listener's environment: the interpreter is mptrace's own, not a
#: program of the session (``subprocess`` instrumentation leaves it alone,
#: as when a new listener takes over from one that died).
OWN_VAR = "MPTRACE_OWN"
#: The file's format; a child of another mptrace that reads another one stays out.
FORMAT = 1
#: The folder of the start-up hook (``_instrument/boot/sitecustomize.py``)
#: that the environment's ``PYTHONPATH`` carries to a child interpreter.
BOOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_instrument", "boot"
)


def without_boot(environ: Mapping[str, str]) -> dict[str, str]:
    """*environ* less the hook: for an interpreter that must not join (the listener)."""
    env = dict(environ)
    env.pop(JOIN_VAR, None)
    if "PYTHONPATH" in env:
        kept = [e for e in env["PYTHONPATH"].split(os.pathsep) if e != BOOT]
        env["PYTHONPATH"] = os.pathsep.join(kept)
    return env


def write(path: str, config: ChildConfig) -> None:
    """Write *config* to *path*, readable by this user alone."""
    data = {
        "format": FORMAT,
        "address": config.address,
        "authkey": config.authkey.hex(),
        "level": config.level,
        "block_timeout": config.block_timeout,
        "structlog": config.structlog,
        "session_id": config.session_id,
        "redact_keys": config.redact_keys,
        "tracing": config.tracing,
        "service_name": config.service_name,
        "sample_interval": config.sample_interval,
        "console": config.console,
        "wait_threshold": config.wait_threshold,
        "trace_ipc": config.trace_ipc,
        "instrument": config.instrument,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)


def read(path: str) -> ChildConfig | None:
    """The session's configuration (with whether to instrument the stdlib),
    or None when there is no such file (the session ended) or it is not one
    this mptrace reads."""
    from mptrace._schema.config import ChildConfig

    try:
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        if data.get("format") != FORMAT:
            return None
        keys = data.get("redact_keys")
        config = ChildConfig(
            address=str(data["address"]),
            authkey=bytes.fromhex(data["authkey"]),
            level=int(data["level"]),
            block_timeout=float(data["block_timeout"]),
            structlog=bool(data["structlog"]),
            session_id=str(data["session_id"]),
            redact_keys=None if keys is None else tuple(str(k) for k in keys),
            tracing=bool(data["tracing"]),
            service_name=str(data["service_name"]),
            sample_interval=float(data["sample_interval"]),
            console=bool(data["console"]),
            wait_threshold=float(data.get("wait_threshold", 0.01)),
            trace_ipc=bool(data.get("trace_ipc", False)),
            instrument=bool(data.get("instrument", True)),
        )
        return config
    except (OSError, ValueError, KeyError, TypeError):
        return None
