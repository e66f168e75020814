"""mptrace's own ``TracerProvider``: the SDK's, without threads at a fork.

The SDK's provider re-runs its process-dependent resource detectors in a
forked child (``_handle_fork``, an after-in-child hook) on a thread pool: a
thread in every forked child before the program's first line there, which a
program that counts or forbids its threads sees (CPython's
``test_python_finalization_error`` makes thread creation fail and gets an
"Exception ignored in fork hook"). The same detectors run here in the
forking thread itself, so the child's resource is the same.
"""

from __future__ import annotations

import threading
from typing import Any


def new_provider(resource: Any) -> Any:
    """An SDK ``TracerProvider`` with *resource* that starts no thread at a fork."""
    from opentelemetry.sdk.trace import TracerProvider

    class OwnProvider(TracerProvider):
        def _handle_fork(self) -> None:
            self._tracers_lock = threading.Lock()
            try:
                from opentelemetry.sdk import resources

                found = resources.Resource.get_empty()
                for detector in resources._build_resource_detectors():
                    if detector.is_process_dependent():
                        found = found.merge(detector.detect())
                self._update_resource(found)
            except Exception:  # an SDK without these: the parent's resource stays
                pass

    return OwnProvider(resource=resource)
