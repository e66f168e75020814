"""Shutdown waited for children in vain: say which, and where they are stuck.

When ``shutdown_timeout`` passes with children still running, the session
names them (``exit.say_still_running``) and asks the listener for a round
of stacks (``_listener.stacks``), so that the run's files say not only that
a child did not end but on which line it waits. Bounded: the listener has
``ANSWER_WAIT`` seconds to answer before the end goes on without it.
"""

from __future__ import annotations

from typing import Any

from mptrace._schema import stacks as _stacks
from mptrace._schema.config import ListenerConfig
from mptrace._session import exit as _exit

#: Seconds the end waits for the listener's round.
ANSWER_WAIT = 3.0


def still_running(processes: list[Any], bound: float, cfg: ListenerConfig) -> None:
    _exit.say_still_running(processes, bound)
    if processes and cfg.stacks_signal and cfg.session_dir:
        try:
            _stacks.ask(cfg.session_dir, ANSWER_WAIT, _stacks.WAITED)
        except OSError:  # no process took stacks: nothing to ask for
            pass


def wait_children(bound: float, cfg: ListenerConfig) -> None:
    """Join the children the end waits for (``exit.wait_children``); then say
    which still run, with their stacks."""
    still_running(_exit.wait_children(bound), bound, cfg)
