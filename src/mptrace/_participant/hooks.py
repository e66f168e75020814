"""Code that runs when a module is imported, and not before.

mptrace joins structlog, and instruments ``multiprocessing.pool`` and
``concurrent.futures``, only once the program imports them: a program that
never uses structlog does not pay its import (50 ms with ``rich`` installed,
which ``structlog.dev`` loads), in its own process or in any spawned child.
As wrapt's post-import hooks do, a finder at the front of ``sys.meta_path``
lets the usual finders find the module and runs the hooks right after the
module's code has run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

Hook = Callable[[ModuleType], None]

_lock = threading.RLock()
_waiting: dict[str, list[Hook]] = {}


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` now if *name* is imported, else right after it is."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _waiting.setdefault(name, []).append(hook)
            if _FINDER not in sys.meta_path:
                sys.meta_path.insert(0, _FINDER)
            return
    hook(module)


def forget(name: str, hook: Hook) -> None:
    """Drop a hook that has not run yet."""
    with _lock:
        hooks = _waiting.get(name, [])
        if hook in hooks:
            hooks.remove(hook)
        if not hooks:
            _waiting.pop(name, None)


def _run(name: str, module: ModuleType) -> None:
    with _lock:
        hooks = _waiting.pop(name, [])
    for hook in hooks:
        try:
            hook(module)
        except Exception as exc:  # telemetry never breaks the import
            sys.stderr.write(f"mptrace: warning: joining {name} failed: {exc!r}\n")


class _Finder:
    """Finds nothing itself: it wraps the loader the other finders give."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> ModuleSpec | None:
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_hooks(module: ModuleType) -> None:
            exec_module(module)
            _run(fullname, module)

        loader.exec_module = exec_then_hooks  # type: ignore[union-attr,method-assign]
        return spec


_FINDER = _Finder()
