"""mptrace's start-up hook for the Python programs a session's processes start.

While a session runs, this folder is first on ``PYTHONPATH``, so every
Python interpreter started from the session's processes (by ``subprocess``,
a shell, ``os.exec*``) imports this module as it starts, as it would
``opentelemetry-instrument``'s. It first runs the ``sitecustomize`` the
environment had without mptrace, if any, then joins the session
(``mptrace._instrument.stage``). An interpreter without mptrace (another
venv, another Python) finds no ``mptrace`` to import and is left as it was.
"""

import atexit
import importlib.machinery
import importlib.util
import os
import sys


def _chain() -> None:
    """Run the ``sitecustomize`` that comes after this one on ``sys.path``."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _leave() -> None:
    stage = sys.modules.get("mptrace._instrument.stage")
    if stage is not None:
        stage.leave()


try:
    _chain()
finally:
    _path = os.environ.get("MPTRACE_JOIN", "")
    if _path and os.path.exists(_path):  # else the session has ended
        # Registered before mptrace imports multiprocessing, whose own exit
        # hook (joining the stage's pools and children) must run before this.
        atexit.register(_leave)
        try:
            from mptrace._instrument import stage as _stage
        except ImportError:  # no mptrace here (another venv), or an older one
            pass
        else:
            try:
                _stage.join()
            except Exception as exc:  # a program is never stopped for telemetry
                sys.stderr.write(f"mptrace: warning: could not join: {exc!r}\n")
