"""What crosses to the listener and to each child: the session's configuration.

Both are plain dataclasses that pickle: :class:`ListenerConfig` goes to the
listener through its stdin, :class:`ChildConfig` travels with every child.
``mptrace._session.options`` checks what the user gave before either is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mptrace.sinks import SinkSpec


@dataclass
class ListenerConfig:
    """What the listener process needs; pickled to it through its stdin."""

    service_name: str
    exporters: tuple[SinkSpec, ...]
    processors: tuple[Callable[..., Any], ...]
    owner_pid: int
    shutdown_timeout: float
    #: The session's private folder (its socket, crash files, the memory sink).
    session_dir: str = ""
    #: The signal that asks a process for its stacks (0: none are taken).
    stacks_signal: int = 0
    #: The run's id, for the events the listener makes on a process's behalf.
    run_id: str = ""
    #: Why the listener this one replaces died (``SIGKILL``); "" for the first.
    took_over: str = ""


@dataclass(frozen=True)
class ChildConfig:
    """What a participating child needs to join the session; travels with it."""

    address: str
    authkey: bytes
    level: int
    block_timeout: float
    structlog: bool
    session_id: str
    redact_keys: tuple[str, ...] | None = None
    tracing: bool = True
    service_name: str = "python"
    sample_interval: float = 1.0
    #: The console exporter is on: records the program printed are marked.
    console: bool = False
    #: The signal on which a process writes its stacks (0: none; ``_schema.stacks``).
    stacks_signal: int = 0
    #: Seconds a pool may go without progress before its stall is told (0: never).
    stall_timeout: float = 60.0
    #: Waits on a multiprocessing lock this long (seconds) or longer are
    #: recorded (``_instrument.waits``); 0 records none.
    wait_threshold: float = 0.01
    #: Queue and pipe items carry the sender's span (``_instrument.ipc``).
    trace_ipc: bool = False
    #: The session instruments the stdlib (``init(instrument=)``): so does
    #: each child, once joined.
    instrument: bool = False

    def __repr__(self) -> str:  # never print the key
        return f"ChildConfig(address={self.address!r}, session_id={self.session_id!r})"
