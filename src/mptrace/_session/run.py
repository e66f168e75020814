"""``mptrace run``: an unmodified program, inside a session.

The program runs in this interpreter, as ``python script.py`` or ``python
-m module`` would run it: ``sys.argv``, ``sys.path[0]`` and ``__main__`` are
what it expects, so spawn and forkserver children re-import it as
``__mp_main__`` as they would without mptrace. The session starts first
(its arguments from the options, then the environment), with the stdlib
instrumented, so every process the program starts takes part, including
those a module starts at import time. Its own ``mptrace.init()`` joins this
session. Its exit status is its own: ``sys.exit(n)``, 1 after an uncaught
exception, death by SIGINT after an uncaught ``KeyboardInterrupt``; the
session ends in the interpreter's exit hooks, after the program's own.
"""

from __future__ import annotations

import atexit
import builtins
import importlib.machinery
import logging
import os
import runpy
import signal
import sys
import types
from typing import Any, NoReturn

from mptrace._participant import frames as _frames
from mptrace._session.session import init

_log = logging.getLogger("mptrace.run")
#: Frames of the runner, not of the program: left out of its traceback.
_OURS = frozenset({os.path.abspath(__file__), os.path.abspath(runpy.__file__)})


def service_name_of(target: str, module: bool) -> str:
    if module:
        return target
    return os.path.splitext(os.path.basename(target))[0] or "python"


def run_program(
    target: str, args: tuple[str, ...], module: bool, **options: Any
) -> NoReturn:
    """Run *target* (a path, or a module name when *module*) with *args*.

    *options* are ``init()``'s; those that are None come from the
    environment. Never returns: exits as the program did.
    """
    if options.get("service_name") is None and not os.environ.get("OTEL_SERVICE_NAME"):
        options["service_name"] = service_name_of(target, module)
    session = init(**options)
    session.runner = True  # type: ignore[union-attr]
    # As python does: the script's folder first, or the working directory for -m.
    here = os.getcwd() if module else os.path.dirname(os.path.abspath(target))
    if sys.path and sys.path[0] in ("", os.getcwd(), os.path.dirname(sys.argv[0])):
        sys.path[0] = here
    else:
        sys.path.insert(0, here)
    sys.argv = [target, *args]
    try:
        _execute(target, module)
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        _report(exc)
        _die_of_sigint()
    except BaseException as exc:
        _report(exc)
        raise SystemExit(1) from None
    raise SystemExit(0)


def _execute(target: str, module: bool) -> None:
    """Run the program as ``__main__``, which it stays until the interpreter ends.

    As under python, and unlike ``runpy.run_path``, the module is not taken
    away when the program returns: what its globals hold (a lock a child
    still needs, a pool) lives on through the exit hooks.
    """
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    if module:
        runpy._run_module_as_main(target)  # type: ignore[attr-defined]
        return
    path = os.path.abspath(target)
    loader = importlib.machinery.SourceFileLoader("__main__", path)
    main.__file__ = target
    main.__loader__ = loader
    main.__spec__ = None
    main.__dict__["__cached__"] = None
    with open(path, "rb") as f:
        code = compile(f.read(), target, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _report(exc: BaseException) -> None:
    """Record the uncaught exception, then print it as Python would."""
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) in _OURS:
        tb = tb.tb_next
    exc.__traceback__ = tb
    _strip_chain(exc)
    _log.error("the program raised an uncaught exception", exc_info=exc)
    sys.excepthook(type(exc), exc, exc.__traceback__)


def _strip_chain(exc: BaseException) -> None:
    """Take mptrace's frames out of *exc* and the exceptions it chains, unless
    the exception came from them (a bug of ours, whose frames say where). A
    ``KeyboardInterrupt`` that lands while mptrace waits on the program's
    behalf (in a ``join()``) is the program's: its frames go too."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        one = todo.pop()
        if one is None or id(one) in seen:
            continue
        seen.add(id(one))
        one.__traceback__ = _frames.without_ours(one.__traceback__, one, _OURS)
        todo += [one.__cause__, one.__context__]


def _die_of_sigint() -> NoReturn:
    """Leave as Python does after an uncaught KeyboardInterrupt: exit hooks, SIGINT."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    raise SystemExit(130)  # pragma: no cover - the signal ends us first
