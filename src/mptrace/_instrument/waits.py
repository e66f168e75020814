"""Where processes wait: long waits on multiprocessing's locks, recorded.

``stdlib`` puts these on ``multiprocessing.synchronize``'s classes::

    SemLock       __init__ __enter__ __getstate__ __setstate__
                  (Lock, RLock, Semaphore, BoundedSemaphore; and the locks
                  inside Condition, Event and Barrier)
    Condition     wait wait_for
    Event         wait
    Barrier       wait

A primitive notes where the program made it (``file:line``, from the frames
at its construction, past multiprocessing's own) and what it is (the
outermost class of ``synchronize`` in that construction: an Event's inner
lock is the Event's). That travels with it when it is pickled to a spawn or
forkserver child (a tuple subclass for the state, which the stdlib's own
``__setstate__`` takes as it is); a fork child has it in memory.

What is timed: a ``with`` block on a lock or semaphore of the program's
(``__enter__`` first tries without blocking; only when that fails does it
take the time and block), and the waits of a Condition, an Event and a
Barrier. A bare ``acquire()`` stays multiprocessing's C method, untimed: any
Python call around it costs more than the lock itself (``acquire()`` +
``release()`` measured 1.7x plain with a wrapper, against the 1.2x allowed;
``benchmarks/ipc.py``), while a ``with`` block, a Python call already, costs
1.1x. A primitive multiprocessing made for itself (a queue's or a pool's
lock, where idle workers wait all the time) is not timed at all. A wait
lasting ``wait_threshold`` seconds or more is recorded: an event
``lock wait`` on the current span, or, where no span of this process records
(a child's process span is its parent's), a span ``lock wait`` holding that
event, under the current one. A wait inside another (a Condition's inner
locks within ``Condition.wait``) is the outer one's. Recording never raises.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from mptrace._instrument import tracing as _tracing
from mptrace._participant import frames as _frames
from mptrace._participant import participant as _participant

EVENT = "lock wait"
#: The attributes of a ``lock wait`` event (see docs/attributes.md).
DURATION = "mptrace.wait.duration"
KIND = "mptrace.wait.kind"
PLACE = "mptrace.wait.place"
OUTCOME = "mptrace.wait.outcome"
#: The attribute where a primitive keeps its :class:`Where` (set and read with
#: setattr and getattr: reading ``__dict__`` makes the object's attributes
#: slower to read, in CPython 3.11, for the rest of its life).
WHERE = "_mptrace_where"

_MP_DIR = os.path.dirname(multiprocessing.__file__) + os.sep
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_INSIDE = frozenset(
    os.path.join(_MP_DIR, name) for name in ("synchronize.py", "context.py")
)
_SYNCHRONIZE = os.path.join(_MP_DIR, "synchronize.py")
_nested = threading.local()
#: What rebuilds a pickled state in the child; ``stdlib`` puts its own here,
#: which instruments a spawn or forkserver child before the lock is rebuilt.
rebuild: list[Callable[..., Any]] = []
_monotonic_ns = time.monotonic_ns


class Where:
    """What a primitive is and where the program made it."""

    __slots__ = ("kind", "place")

    def __init__(self, kind: str, place: str) -> None:
        self.kind = kind
        self.place = place


class _State(tuple):  # type: ignore[type-arg]
    """A SemLock's pickled state, with its :class:`Where` along."""

    where: Where

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild[0], (tuple(self), self.where.kind, self.where.place))


def with_where(values: tuple[Any, ...], kind: str, place: str) -> _State:
    """A SemLock's state with its :class:`Where`."""
    out = _State(values)
    out.where = Where(kind, place)
    return out


def origin(frame: Any) -> Where | None:
    """The :class:`Where` of a primitive whose construction called from *frame*;
    None for multiprocessing's own (a queue's, a pool's)."""
    kind = "?"
    while frame is not None:
        code = frame.f_code
        name = code.co_filename
        if name == _SYNCHRONIZE and code.co_name == "__init__":
            owner = frame.f_locals.get("self")
            kind = type(owner).__name__ if owner is not None else kind
        elif name not in _INSIDE and not name.startswith(_OWN_DIR):
            break
        frame = frame.f_back
    if frame is None or name.startswith(_MP_DIR):
        return None
    return Where(kind, f"{name}:{frame.f_lineno}")


def _threshold_ns() -> int:
    """The shortest wait recorded, in ns; 0 when none is (no session, off,
    or inside a wait already being timed)."""
    part = _participant.current()
    if part is None or getattr(_nested, "busy", False):
        return 0
    return int(getattr(part.config, "wait_threshold", 0) * 1e9)


def record(where: Where, wall_ns: int, waited_ns: int, outcome: str) -> None:
    """Record one wait on the current span, or on a span of its own."""
    try:
        attributes: dict[str, Any] = {
            DURATION: waited_ns / 1e9,
            KIND: where.kind,
            PLACE: where.place,
            OUTCOME: outcome,
        }
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(EVENT, attributes, timestamp=wall_ns)
            return
        tracer = _tracing.session_tracer()
        if tracer is None:
            return
        span = tracer.start_span(
            EVENT,
            context=_tracing.parent_context(),
            start_time=wall_ns,
            attributes={"mptrace.span": "wait", KIND: where.kind, PLACE: where.place},
        )
        span.add_event(EVENT, attributes, timestamp=wall_ns)
        span.end(end_time=wall_ns + waited_ns)
    except Exception:  # telemetry never breaks the program
        pass


def _blocked(semlock: Any, where: Where, block: Any, timeout: Any) -> Any:
    """The try without blocking failed: acquire as asked, timed if it blocks."""
    threshold = _threshold_ns()
    if not threshold or not block:
        return semlock.acquire(block, timeout)
    wall, start = time.time_ns(), _monotonic_ns()
    got = semlock.acquire(block, timeout)
    waited = _monotonic_ns() - start
    if waited >= threshold:
        record(where, wall, waited, "acquired" if got else "timed out")
    return got


# -- the replacements (``stdlib``'s table) --------------------------------------------


def _init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            where = origin(sys._getframe(1))
        except Exception:
            where = None
        original(self, *args, **kwargs)
        if where is not None:  # last: the stdlib's attributes keep their order
            setattr(self, WHERE, where)

    return __init__


def _enter(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __enter__(self: Any) -> Any:
        semlock = self._semlock
        if semlock.acquire(False):
            return True
        try:
            where = getattr(self, WHERE, None)
            if where is None:
                return semlock.__enter__()
            return _blocked(semlock, where, True, None)
        except BaseException as exc:  # Ctrl-C while it blocks: the program's
            _frames.hide(exc)
            raise

    return __enter__


def _getstate(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __getstate__(self: Any) -> Any:
        state = original(self)
        where = getattr(self, WHERE, None)
        if where is None or type(state) is not tuple:
            return state
        return with_where(state, where.kind, where.place)

    return __getstate__


def _setstate(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    def __setstate__(self: Any, state: Any) -> None:
        where = getattr(state, "where", None)
        original(self, state)
        if where is not None:
            setattr(self, WHERE, where)

    return __setstate__


def _where_of(semlock_owner: Any) -> Where | None:
    return getattr(semlock_owner, WHERE, None)


def _outcome(result: Any) -> str:
    return "acquired" if result else "timed out"


def _passed(result: Any) -> str:
    return "acquired"  # a Barrier's index, 0 for one party: it raises otherwise


def _waiting(
    where_of: Callable[[Any], Where | None],
    outcome_of: Callable[[Any], str] = _outcome,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A wait of a Condition, an Event or a Barrier, timed as one."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def wait(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                where = where_of(self)
                threshold = _threshold_ns() if where is not None else 0
            except Exception:
                threshold = 0
            if not threshold:
                try:
                    return original(self, *args, **kwargs)
                except BaseException as exc:
                    _frames.hide(exc)
                    raise
            wall, start = time.time_ns(), _monotonic_ns()
            _nested.busy = True
            outcome = "raised"
            try:
                result = original(self, *args, **kwargs)
                outcome = outcome_of(result)
                return result
            except BaseException as exc:  # Ctrl-C, a broken barrier, a bad call
                if isinstance(exc, threading.BrokenBarrierError):
                    outcome = "broken"
                _frames.hide(exc)
                raise
            finally:
                _nested.busy = False
                waited = _monotonic_ns() - start
                if waited >= threshold and outcome != "raised":
                    record(where, wall, waited, outcome)  # type: ignore[arg-type]

        return wait

    return make


def _condition(cond: Any) -> Where | None:
    return _where_of(cond._wait_semaphore)


REPLACEMENTS: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("SemLock", "__init__", _init),
    ("SemLock", "__enter__", _enter),
    ("SemLock", "__getstate__", _getstate),
    ("SemLock", "__setstate__", _setstate),
    ("Condition", "wait", _waiting(_condition)),
    ("Condition", "wait_for", _waiting(_condition)),
    ("Event", "wait", _waiting(lambda event: _where_of(event._flag))),
    ("Barrier", "wait", _waiting(lambda barrier: _condition(barrier._cond), _passed)),
]
