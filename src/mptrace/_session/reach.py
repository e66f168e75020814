"""Carrying the session to the Python programs its processes start.

While a session runs with ``subprocesses`` on (the default;
``MPTRACE_SUBPROCESS=0`` or ``init(subprocesses=False)`` turns it off), the
owner's environment, which every process of the run inherits, holds:

- ``MPTRACE_JOIN``: the path of the join file (``_schema.joinfile``), mode
  0600 in the session's 0700 folder: the address and the key, never in an
  ``argv`` or a world-readable place;
- first on ``PYTHONPATH``: the folder of mptrace's ``sitecustomize``
  (``_instrument/boot``), which makes a starting interpreter join
  (``_instrument.stage``) and then runs the ``sitecustomize`` it had.

:func:`end` closes the spans of programs not waited for and puts the
environment back at shutdown.
"""

from __future__ import annotations

import os

from mptrace._instrument import subprocesses as _subprocesses
from mptrace._schema import joinfile as _joinfile
from mptrace._schema.config import ChildConfig
from mptrace._schema.joinfile import without_boot

BOOT = _joinfile.BOOT
_VARS = (_joinfile.JOIN_VAR, "PYTHONPATH")


def carry(folder: str, config: ChildConfig) -> dict[str, str | None]:
    """Write the join file in *folder*; put it and the hook in the environment.

    Returns what the two variables held before, for :func:`withdraw`.
    """
    old = {var: os.environ.get(var) for var in _VARS}
    path = os.path.join(folder, _joinfile.JOIN_FILE)
    _joinfile.write(path, config)
    os.environ[_joinfile.JOIN_VAR] = path
    entries = [e for e in (old["PYTHONPATH"] or "").split(os.pathsep) if e]
    os.environ["PYTHONPATH"] = os.pathsep.join([BOOT, *entries])
    return old


def end(old: dict[str, str | None]) -> None:
    """At shutdown: the programs not waited for, then :func:`withdraw`."""
    _subprocesses.end_open()
    withdraw(old)


def withdraw(old: dict[str, str | None]) -> None:
    """Put back what :func:`carry` changed."""
    if not old:
        return
    os.environ.pop(_joinfile.JOIN_VAR, None)
    if old.get(_joinfile.JOIN_VAR) is not None:
        os.environ[_joinfile.JOIN_VAR] = str(old[_joinfile.JOIN_VAR])
    os.environ["PYTHONPATH"] = without_boot(os.environ).get("PYTHONPATH", "")
    if not os.environ["PYTHONPATH"] and old.get("PYTHONPATH") is None:
        del os.environ["PYTHONPATH"]
