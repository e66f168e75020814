"""``opentelemetry-instrument python app.py``: the program in an mptrace session.

``opentelemetry-instrument`` puts OpenTelemetry's ``sitecustomize`` on
``PYTHONPATH``, and in every interpreter that starts with it there, before
the program runs, it configures the distro, then the SDK (the provider and
the exporters the ``OTEL_*`` variables name), then each
``opentelemetry_instrumentor`` entry point. This one starts a session, so its
provider is already the program's: ``init()`` adds its span processor to it,
and the listener rebuilds its OTLP span exporter for the children's spans
(``_participant.otel_guest``). The parent's spans leave through the SDK's own processor,
every child's through the listener: each span once, one service name.

No exporter of mptrace's own is added unless ``MPTRACE_EXPORTERS`` names
some: the console would change what the program prints.

Every Python process started under it runs that ``sitecustomize``, so only a
program's own interpreter starts a session. A spawn child, the fork server
and the resource tracker (``python -c "from multiprocessing..."``) join the
parent's session or none; the listener never runs it (``launch`` takes the
directory off its ``PYTHONPATH``, and its command line is recognised too);
``mptrace run`` starts its own session with its own options; a fork child
inherits its parent's session and runs no ``sitecustomize``. A program
started by a process of a running session joins that session instead
(``_instrument.stage``): OpenTelemetry's ``sitecustomize`` stays first on
``PYTHONPATH``, ahead of mptrace's, so the instrumentor is the hook there.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from mptrace._instrument import stage as _stage
from mptrace._schema.joinfile import JOIN_VAR
from mptrace._session.session import Session, init

#: ``python -c CODE`` commands that are never a program of the user's.
_HELPERS = ("from multiprocessing", "mptrace._listener.main")


def starts_session(orig_argv: list[str] | None = None) -> bool:
    """True in a program's own interpreter; False in a helper or child process."""
    argv = list(sys.orig_argv if orig_argv is None else orig_argv)
    if "--multiprocessing-fork" in argv:
        return False  # a spawn child: it joins the parent's session
    if joins_a_session():
        return False  # a program of a running session: it joins it
    what, target = _command(argv)
    if what == "-c":
        return not any(marker in target for marker in _HELPERS)
    if what == "-m":
        return target.partition(".")[0] != "mptrace"  # `python -m mptrace run`
    return os.path.basename(target) != "mptrace"  # the `mptrace` command


def joins_a_session() -> bool:
    """True in a program started by a process of a running session."""
    path = os.environ.get(JOIN_VAR)
    return bool(path) and os.path.exists(str(path))


def _command(argv: list[str]) -> tuple[str, str]:
    """What the interpreter runs: ``("-c", code)``, ``("-m", module)`` or
    ``("", script)``, after the interpreter's own options."""
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-c", "-m"):
            return arg, next(args, "")
        if arg in ("-W", "-X", "--check-hash-based-pycs"):
            next(args, None)  # the option's value
        elif not arg.startswith("-") or arg == "-":
            return "", arg
    return "", ""


class MultiprocessingInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every process of plain ``multiprocessing`` in one session, its spans once.

    Loaded by ``opentelemetry-instrument`` from the ``opentelemetry_instrumentor``
    entry point ``mptrace``; turn it off with
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=mptrace``.
    """

    _session: Session | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        if joins_a_session():
            atexit.register(_stage.leave)
            _stage.join()
            return
        if not starts_session():
            return
        exporters = kwargs.get("exporters")
        if exporters is None and not os.environ.get("MPTRACE_EXPORTERS", "").strip():
            exporters = ()
        session = init(exporters=exporters)
        if isinstance(session, Session):
            session.runner = True  # the program's own init() joins it
            type(self)._session = session

    def _uninstrument(self, **kwargs: Any) -> None:
        session = type(self)._session
        type(self)._session = None
        if session is not None:
            session.shutdown()
