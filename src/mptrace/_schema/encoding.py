"""Events as JSON lines: compact, UTF-8, one encoder built once."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

Event = dict[str, Any]


def _make_json_encoder() -> Any:
    # json.dumps builds its C encoder anew on every call; building it once
    # halves the cost of the one encoding on every logging call's path.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return json.JSONEncoder(
            ensure_ascii=False,
            check_circular=False,
            default=repr,
            separators=(",", ":"),
        ).encode
    encoder = make(
        None, repr, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def encode(obj: object) -> str:
        chunks = encoder(obj, 0)
        return chunks if type(chunks) is str else "".join(chunks)

    return encode


_json = _make_json_encoder()


_orjson: Any
try:
    from orjson import dumps as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson = None


def to_json(event: Event) -> bytes:
    """*event* as compact UTF-8 JSON; lone surrogates become ``\\udcXX`` escapes.

    orjson writes nearly every event (0.16 µs against 1.7 µs for the stdlib's
    encoder, on every logging call's path); what it refuses (a lone
    surrogate, an int past 64 bits) goes to the stdlib's, with the same
    compact separators. The escapes are JSON's own, so reading the line back
    gives the same string, and the bytes are always valid UTF-8.
    """
    if _orjson is not None:
        try:
            data: bytes = _orjson(event, default=repr)
            return data
        except TypeError:  # orjson.JSONEncodeError
            pass
    text: str = _json(event)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")
