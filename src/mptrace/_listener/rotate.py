"""A JSON-lines file that lives with log rotation.

``jsonl:PATH`` takes options after a ``?``, in a URL's query syntax::

    jsonl:run.jsonl?max_bytes=10MB&backups=5&compress=gz

``max_bytes``
    Rotate when the file would pass this size: a number of bytes, or one
    with a unit, ``KB``/``MB``/``GB`` (powers of 1000) or ``KiB``/``MiB``/
    ``GiB`` (powers of 1024). Lines are never split: a batch goes whole into
    one file.
``backups``
    How many rotated files to keep (``PATH.1`` the newest); 5 unless given.
``compress``
    ``gz`` compresses each rotated file (``PATH.1.gz``); ``none`` (the
    default) leaves them as they are.
``max_rate``, ``rate``
    Records per second a logger may write (by the records' own times);
    ``max_rate=100`` for every logger, ``rate=app.db:100,noisy:5`` for the
    loggers named and their children. What is over is not written, and
    counted; the count is said at the end (``fold.RateLimit``). Without
    either, every record is written.

With or without options, the file follows a rename the way the stdlib's
``WatchedFileHandler`` does: before each batch the path is looked at, and
when it names another file (logrotate moved it) or none, the path is opened
anew; the renamed file keeps everything written before. A SIGHUP to the
listener process (``Session.listener_pid``) reopens the path too.

Writing itself is :class:`~mptrace._listener.jsonl.JsonlSink`'s; this class only
decides when to reopen and when to rotate.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from mptrace._listener.fold import RATE_HELP, RateLimit, parse_rates
from mptrace._listener.jsonl import JsonlSink, cut_partial_line, jsonl_path
from mptrace.exceptions import ConfigurationError
from mptrace.sinks import SinkSpec

if TYPE_CHECKING:
    from mptrace._schema.config import ListenerConfig

ROTATION_HELP = (
    "jsonl takes options after '?', as in "
    "'jsonl:run.jsonl?max_bytes=10MB&backups=5&compress=gz': max_bytes is a size "
    "in bytes or with a unit (KB, MB, GB, KiB, MiB, GiB), backups a number of "
    "rotated files to keep (at least 1), compress 'gz' or 'none'; " + RATE_HELP
)
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
DEFAULT_BACKUPS = 5


def parse_size(text: str) -> int:
    match = _SIZE.match(text)
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ConfigurationError(f"Invalid max_bytes {text!r}. {ROTATION_HELP}")
    size = int(float(match.group(1)) * unit)
    if size < 1:
        raise ConfigurationError(f"max_bytes must be at least 1 byte. {ROTATION_HELP}")
    return size


def parse_options(query: str) -> dict[str, Any]:
    """The rotation options of a ``jsonl:PATH?QUERY`` target, checked."""
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigurationError(
            f"Invalid options {query!r}. {ROTATION_HELP}"
        ) from None
    for key, value in pairs:
        if key in options:
            msg = f"The option {key!r} is given twice. {ROTATION_HELP}"
            raise ConfigurationError(msg)
        if key == "max_bytes":
            options[key] = parse_size(value)
        elif key == "backups":
            if not value.isdigit() or int(value) < 1:
                raise ConfigurationError(f"Invalid backups {value!r}. {ROTATION_HELP}")
            options[key] = int(value)
        elif key == "compress":
            if value.lower() not in ("gz", "none"):
                raise ConfigurationError(f"Invalid compress {value!r}. {ROTATION_HELP}")
            options[key] = value.lower() == "gz"
        elif key == "max_rate":
            if not value.isdigit() or int(value) < 1:
                raise ConfigurationError(f"Invalid max_rate {value!r}. {ROTATION_HELP}")
            options[key] = int(value)
        elif key == "rate":
            if "rates" in options:
                msg = f"The option 'rate' is given twice. {ROTATION_HELP}"
                raise ConfigurationError(msg)
            try:
                options["rates"] = parse_rates(value)
            except ValueError as exc:
                raise ConfigurationError(f"{exc}. {ROTATION_HELP}") from None
        else:
            raise ConfigurationError(f"Unknown option {key!r}. {ROTATION_HELP}")
    if ("backups" in options or "compress" in options) and "max_bytes" not in options:
        raise ConfigurationError(
            "backups and compress need max_bytes, the size to rotate at. "
            + ROTATION_HELP
        )
    return options


# -- SIGHUP ---------------------------------------------------------------------

_open_sinks: weakref.WeakSet[RotatingJsonlSink] = weakref.WeakSet()
_hup_installed = False


def _on_hup(signum: int, frame: Any) -> None:
    for sink in list(_open_sinks):
        sink.reopen_pending = True


def _install_hup() -> None:
    """In the listener's main thread: SIGHUP reopens every JSON-lines file."""
    global _hup_installed
    if _hup_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        signal.signal(signal.SIGHUP, _on_hup)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGHUP
        return
    _hup_installed = True


# -- the sink ---------------------------------------------------------------------


class RotatingJsonlSink(JsonlSink):
    """A :class:`JsonlSink` that follows renames, reopens on SIGHUP, rotates by size."""

    def __init__(
        self,
        path: str,
        max_bytes: int = 0,
        backups: int = 0,
        compress: bool = False,
        max_rate: int = 0,
        rates: dict[str, int] | None = None,
    ) -> None:
        super().__init__(path)
        self.rate = RateLimit(max_rate, rates) if max_rate or rates else None
        self.max_bytes = max_bytes
        self.backups = backups or DEFAULT_BACKUPS
        self.compress = compress
        self.reopen_pending = False
        self._identity = self._file_identity()
        _open_sinks.add(self)
        _install_hup()

    def _file_identity(self) -> tuple[int, int]:
        st = os.fstat(self.file.fileno())
        return st.st_dev, st.st_ino

    def _moved(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def reopen(self) -> None:
        """Close the file and open the path again (a new file if it was moved)."""
        self.reopen_pending = False
        JsonlSink.shutdown(self)
        JsonlSink.__init__(self, self.path)  # opened the way JsonlSink opens it
        self._identity = self._file_identity()

    @property
    def dropped(self) -> int:  # type: ignore[override]
        """Records the rate limit kept out (said at the end by the listener)."""
        return self.rate.total() if self.rate is not None else 0

    @property
    def dropped_what(self) -> str:
        return self.rate.said() if self.rate is not None else "events"

    def export_raw(self, lines: Sequence[bytes]) -> None:
        if self.rate is not None:
            lines = [line for line in lines if self.rate.keep(line)]
            if not lines:
                return
        if self.reopen_pending or self._moved():
            self.reopen()
        if self.max_bytes:
            size = self.file.tell()
            if size and size + sum(len(line) + 1 for line in lines) > self.max_bytes:
                self.rotate()
        super().export_raw(lines)

    def rotate(self) -> None:
        """``PATH`` becomes ``PATH.1``, ``PATH.1`` ``PATH.2``, ...; the oldest goes."""
        JsonlSink.shutdown(self)
        suffix = ".gz" if self.compress else ""
        oldest = f"{self.path}.{self.backups}{suffix}"
        if os.path.exists(oldest):
            os.remove(oldest)
        for n in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{n}{suffix}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n + 1}{suffix}")
        os.replace(self.path, f"{self.path}.1")
        if self.compress:
            with open(f"{self.path}.1", "rb") as src:
                with gzip.open(f"{self.path}.1.gz", "wb", compresslevel=6) as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            os.remove(f"{self.path}.1")
        JsonlSink.__init__(self, self.path)
        self._identity = self._file_identity()

    def shutdown(self, timeout: float = 5.0) -> None:
        _open_sinks.discard(self)
        super().shutdown(timeout)


# -- the registry's entry for 'jsonl' ----------------------------------------------


def check_jsonl(name: str, target: str | None) -> SinkSpec:
    """``jsonl:PATH`` or ``jsonl:PATH?OPTIONS``, checked at ``init()``."""
    path, _, query = (target or "").partition("?")
    spec = jsonl_path(name, path)
    return SinkSpec("jsonl", spec.target, kwargs=parse_options(query) if query else {})


def build_jsonl(spec: SinkSpec, cfg: ListenerConfig) -> RotatingJsonlSink:
    if cfg.took_over:  # the listener before was killed, maybe mid-line
        cut_partial_line(str(spec.target))
    return RotatingJsonlSink(str(spec.target), **spec.kwargs)
