"""structlog processors that mptrace runs in the listener.

A processor is any callable ``processor(logger, method_name, event_dict)``
returning the event dict, exactly as in structlog. The listener runs the
session's processors on every log event before any exporter sees it, so a
processor must be importable by the listener process: a function or class
defined in an importable module, not in ``__main__``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mptrace._schema.events import STRUCTURE_KEYS

__all__ = ["DEFAULT_SECRET_KEYS", "Redact"]

#: Key names whose values are replaced by :class:`Redact` unless told otherwise.
DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credentials",
    "session_id",
)

_CACHE_LIMIT = 10_000
# What mptrace itself writes on events, spans and lifecycle records is never a
# secret and never checked; what the program puts in (fields, span, event and
# link attributes) is.
_CORE_KEYS = STRUCTURE_KEYS


_NOT_WORD = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def _words(key: str) -> str:
    """``"X-Api-Key"``, ``"accessToken"`` → ``"_x_api_key_"``, ``"_access_token_"``."""
    return "_" + _NOT_WORD.sub("_", _CAMEL.sub(r"\1_\2", key).lower()).strip("_") + "_"


class Redact:
    """Replace the values of secret-looking keys, at any depth of nesting.

    A key is read as words: lower-cased, split at anything that is not a
    letter or a digit (``_``, ``.``, ``-``, a space, the quotes of a bytes
    key's repr) and where camelCase turns. It matches when one of *keys*
    (read the same way) is a run of its words: with the default keys
    ``password``, ``db.password``, ``X-Api-Key``,
    ``http.request.header.authorization``, ``mptrace.args.password``,
    ``b'password'``, ``accessToken`` are redacted, ``tokens_used`` is not.
    Free text (a message, a traceback, a repr) is not searched.

    >>> Redact()(None, "info", {"event": "login", "password": "hunter2"})
    {'event': 'login', 'password': '[redacted]'}
    """

    __slots__ = ("_cache", "_needles", "keys", "placeholder")

    def __init__(
        self, keys: Iterable[str] = DEFAULT_SECRET_KEYS, placeholder: str = "[redacted]"
    ) -> None:
        if isinstance(keys, str):
            raise TypeError(
                "Redact(keys=...) takes an iterable of key names, such as "
                "('password', 'token'), not a single string."
            )
        self.keys = tuple(keys)
        self._needles = tuple(_words(k) for k in self.keys)
        self.placeholder = placeholder
        self._cache: dict[str, bool] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (Redact, (self.keys, self.placeholder))

    def is_secret(self, key: str) -> bool:
        """True when the value of *key* is to be redacted."""
        hit = self._cache.get(key)
        if hit is None:
            norm = _words(key)
            hit = any(k in norm for k in self._needles)
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = hit
        return hit

    def _scrub(self, value: Any, depth: int) -> Any:
        if depth > 64:
            return self.placeholder  # fail closed: never let a secret through
        if type(value) is dict:
            return {
                k: self.placeholder
                if type(k) is str and self.is_secret(k)
                else self._scrub(v, depth + 1)
                for k, v in value.items()
            }
        if type(value) is list:
            return [self._scrub(v, depth + 1) for v in value]
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: dict[str, Any]
    ) -> dict[str, Any]:
        is_secret = self.is_secret
        for key in event_dict.keys() - _CORE_KEYS:
            if type(key) is not str:
                continue
            if is_secret(key):
                event_dict[key] = self.placeholder
            else:
                value = event_dict[key]
                if type(value) is dict or type(value) is list:
                    event_dict[key] = self._scrub(value, 0)
        return event_dict
