"""Configuration from the environment, for the runners and ``init()`` alike.

An argument given to ``init()`` (or an option of ``mptrace run``) wins; an
argument left out is read from its variable, then takes its default. A bad
value fails at once, naming the variable.

========================  ======================================  ===========
variable                  value                                   default
========================  ======================================  ===========
``MPTRACE_EXPORTERS``     as ``exporters=``, comma-separated      ``console``
``MPTRACE_LEVEL``         a level name or number                  ``INFO``
``MPTRACE_INSTRUMENT``    ``1``/``true`` or ``0``/``false``       ``1``
``MPTRACE_CONSOLE``       the console's options (``_listener.console``)    none
``MPTRACE_TRACES``        ``run`` or ``unit`` (as ``traces=``)    ``run``
``MPTRACE_STACKS_SIGNAL`` a signal name or number, ``0`` for none  ``SIGUSR2``
``MPTRACE_SUBPROCESS``    ``1``/``true`` or ``0``/``false``       ``1``
``OTEL_SERVICE_NAME``     the service name                        the script
========================  ======================================  ===========

``MPTRACE_WAIT_THRESHOLD`` (seconds, default 0.01; 0: none) is the shortest
wait on a multiprocessing lock that is recorded; ``MPTRACE_TRACE_IPC``
(``1``/``true`` or ``0``/``false``, default off) makes queue and pipe items
carry the producer's span (``_instrument.ipc``). Neither has an argument.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from mptrace._participant import otel_guest as _otel_guest
from mptrace._schema.config import ChildConfig, ListenerConfig
from mptrace._schema.stacks import DEFAULT_SIGNAL, parse_signal
from mptrace._session.options import (
    check_processors,
    default_service_name,
    parse_exporters,
    parse_level,
    parse_timeout,
    redact_keys,
)
from mptrace.exceptions import ConfigurationError
from mptrace.sinks import SinkSpec

T = TypeVar("T")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_env(name: str, parse: Callable[[str], T]) -> T | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse(raw)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"The environment variable {name}={raw!r}: {exc}"
        ) from None


def _exporters(raw: str) -> tuple[SinkSpec, ...]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return parse_exporters(items)


def _flag(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigurationError("Valid values are 1, true, yes, on or 0, false, no, off.")


def exporters(given: Any) -> tuple[SinkSpec, ...]:
    """``exporters=``, else ``MPTRACE_EXPORTERS``, else the console."""
    if given is not None:
        return parse_exporters(given)
    return _from_env("MPTRACE_EXPORTERS", _exporters) or parse_exporters("console")


def level(given: Any) -> int:
    """``level=``, else ``MPTRACE_LEVEL``, else INFO."""
    if given is not None:
        return parse_level(given)
    found = _from_env("MPTRACE_LEVEL", parse_level)
    return parse_level("INFO") if found is None else found


def instrument(given: bool | None) -> bool:
    """``instrument=``, else ``MPTRACE_INSTRUMENT``, else on."""
    if given is not None:
        return bool(given)
    found = _from_env("MPTRACE_INSTRUMENT", _flag)
    return True if found is None else found


def subprocesses(given: bool | None) -> bool:
    """``subprocesses=``, else ``MPTRACE_SUBPROCESS``, else on."""
    if given is not None:
        return bool(given)
    found = _from_env("MPTRACE_SUBPROCESS", _flag)
    return True if found is None else found


TRACES = ("run", "unit")


def _traces(raw: str) -> str:
    value = raw.strip().lower()
    if value not in TRACES:
        raise ConfigurationError(
            f"Invalid traces {raw!r}: 'run' makes the whole run one trace, "
            "'unit' makes each top-level unit of work a trace of its own."
        )
    return value


def traces(given: str | None) -> str:
    """``traces=``, else ``MPTRACE_TRACES``, else ``run``."""
    if given is not None:
        return _traces(str(given))
    return _from_env("MPTRACE_TRACES", _traces) or "run"


def _signal(raw: object) -> int:
    try:
        return parse_signal(raw)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def stacks_signal(given: object) -> int:
    """``stacks_signal=``, else ``MPTRACE_STACKS_SIGNAL``, else SIGUSR2; 0: none."""
    if given != "default":
        return _signal(given)
    found = _from_env("MPTRACE_STACKS_SIGNAL", _signal)
    return _signal(DEFAULT_SIGNAL) if found is None else found


def stall_timeout(given: object) -> float:
    """``stall_timeout=``, else ``MPTRACE_STALL_TIMEOUT``, else 60; 0: never."""
    if given is None:
        found = _from_env("MPTRACE_STALL_TIMEOUT", _seconds_or_off)
        return 60.0 if found is None else found
    return _seconds_or_off(given)


def _seconds_or_off(raw: object) -> float:
    value = raw
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = -1
    if not 0 <= value <= 86400:
        raise ConfigurationError(
            "stall_timeout= takes a number of seconds from 0 (never tell a "
            f"stall) to 86400, not {raw!r}."
        )
    return float(value)


#: Waits on multiprocessing's locks this long or longer are recorded (seconds).
WAIT_THRESHOLD = 0.01


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ConfigurationError(
            "Valid values are a number of seconds, 0 or more (0.05 for 50 ms); "
            "0 records no wait."
        )
    return value


def wait_threshold() -> float:
    """``MPTRACE_WAIT_THRESHOLD``, else 10 ms; 0: no lock wait is recorded."""
    found = _from_env("MPTRACE_WAIT_THRESHOLD", _seconds)
    return WAIT_THRESHOLD if found is None else found


# configs() takes arguments of the same names as these.
_exporters_of, _level_of, _stacks_signal_of = exporters, level, stacks_signal
_stall_timeout_of = stall_timeout


def configs(
    *,
    service_name: str | None,
    exporters: Any,
    level: Any,
    redact: Any,
    processors: Any,
    structlog: bool,
    tracing: bool,
    sample_interval: float,
    block_timeout: float,
    shutdown_timeout: float,
    stacks_signal: Any,
    stall_timeout: Any = None,
) -> tuple[ListenerConfig, ChildConfig]:
    """``init()``'s arguments and the environment, checked, as what the listener
    and every child will be given (the child's address is filled in later).

    Raises ConfigurationError, saying what is allowed.
    """
    stacks_ = _stacks_signal_of(stacks_signal)
    listener_config = ListenerConfig(
        service_name=service_name or _otel_guest.service_name(default_service_name),
        exporters=_otel_guest.with_program_pipeline(
            _exporters_of(exporters), os.getpid(), bool(tracing)
        ),
        processors=check_processors(processors),
        owner_pid=os.getpid(),
        shutdown_timeout=parse_timeout("shutdown_timeout", shutdown_timeout),
        stacks_signal=stacks_,
        run_id=str(uuid.uuid4()),
    )
    child_config = ChildConfig(
        address="",
        authkey=secrets.token_bytes(32),
        level=_level_of(level),
        block_timeout=parse_timeout("block_timeout", block_timeout),
        structlog=bool(structlog),
        session_id=listener_config.run_id,
        redact_keys=redact_keys(redact),
        tracing=bool(tracing),
        service_name=listener_config.service_name,
        sample_interval=parse_timeout("sample_interval", sample_interval),
        console=any(s.name == "console" for s in listener_config.exporters),
        stacks_signal=stacks_,
        stall_timeout=_stall_timeout_of(stall_timeout),
        wait_threshold=wait_threshold(),
        trace_ipc=bool(_from_env("MPTRACE_TRACE_IPC", _flag)),
    )
    return listener_config, child_config
