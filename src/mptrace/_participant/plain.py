"""Turning anything a program logs into plain data that can cross a process.

Every function here returns something and never raises: a value that cannot
be turned into text becomes a placeholder that says why, a string longer than
the cap is cut with a marker that says how much was cut.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

#: Longest string value (in characters) that crosses the funnel whole.
MAX_VALUE_CHARS = 1024 * 1024
#: How deep lists, tuples and dicts are copied before the rest becomes a repr.
MAX_DEPTH = 6
#: How many items of a list or dict are copied; the rest is counted.
MAX_ITEMS = 1000

_SCALARS = frozenset((float, bool, type(None)))
#: Ints this large cannot become decimal text (``sys.get_int_max_str_digits``,
#: 4,300 digits by default); they are written in hexadecimal instead.
_BIG = 10**4000


def truncate(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Cut *text* to *limit* characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


def _describe_failure(obj: object, how: str, exc: BaseException) -> str:
    try:
        kind = type(obj).__qualname__
    except Exception:  # pragma: no cover - a type without a name
        kind = "object"
    try:
        why = f"{type(exc).__name__}: {exc}"
    except Exception:
        why = type(exc).__name__
    return f"<{how}() of {kind} object failed: {why}>"


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder when ``__str__`` raises."""
    try:
        text = str(obj)
        if type(text) is not str:  # a __str__ returning a str subclass
            text = str.__str__(text)
    except Exception as exc:
        return _describe_failure(obj, "str", exc)
    return truncate(text)


def safe_repr(obj: object) -> str:
    """``repr(obj)``, or a placeholder when ``__repr__`` raises."""
    try:
        text = repr(obj)
        if type(text) is not str:
            text = str.__str__(text)
    except Exception as exc:
        return _describe_failure(obj, "repr", exc)
    return truncate(text)


def plain(value: Any, depth: int = 0) -> Any:
    """Return *value* as plain data: str, int, float, bool, None, list or dict.

    Other objects become their ``repr`` (a placeholder if that raises).
    """
    kind = type(value)
    if kind is str:
        return value if len(value) <= MAX_VALUE_CHARS else truncate(value)
    if kind is int:
        return value if -_BIG < value < _BIG else big_int(value)
    if kind is float:
        # JSON has no NaN or infinity: keep them as the strings Python prints.
        return value if value - value == 0.0 else repr(value)
    if kind in _SCALARS:
        return value
    if kind is list or kind is tuple or isinstance(value, dict):
        if depth >= MAX_DEPTH:
            # Contents this deep are not copied, so no secret inside can leak.
            return (
                f"<{kind.__name__} of {len(value)} items nested deeper than "
                f"{MAX_DEPTH}>"
            )
        if kind is list or kind is tuple:
            items = [plain(v, depth + 1) for v in value[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                items.append(f"…[{len(value) - MAX_ITEMS} more items]")
            return items
        try:
            return _plain_dict(value, depth)
        except Exception:  # a dict subclass whose items() misbehaves
            return safe_repr(value)
    if isinstance(value, int) and not isinstance(value, bool):  # an int subclass
        return plain(int(value), depth)
    return safe_repr(value)


def _plain_dict(value: Any, depth: int) -> dict[str, Any]:
    """A dict with str keys; a key of another type becomes its repr, and one
    whose repr is already taken (``1`` beside ``"1"``) gets its type's name
    in front (``int:1``): no value is lost to a collision."""
    out: dict[str, Any] = {}
    renamed: dict[str, Any] = {}  # key in out -> the non-str key it came from
    for i, (k, v) in enumerate(value.items()):
        if i == MAX_ITEMS:
            out["…"] = f"[{len(value) - MAX_ITEMS} more items]"
            break
        v = plain(v, depth + 1)
        if type(k) is str:
            if k in renamed:  # an earlier non-str key took this name: move it
                other = renamed.pop(k)
                out[f"{type(other).__name__}:{k}"] = out.pop(k)
            out[k] = v
            continue
        key = safe_repr(k)
        if key in out:
            key = f"{type(k).__name__}:{key}"
        else:
            renamed[key] = k
        out[key] = v
    return out


def big_int(value: int) -> str:
    """An int too long for decimal text, in hexadecimal (cut if very long)."""
    text = hex(value)
    return truncate(f"<int of {value.bit_length()} bits: {text}>")


def exception_dict(exc: BaseException) -> dict[str, str]:
    """Describe *exc* as plain data: type, message and the formatted traceback.

    The traceback includes chained causes and, on Python 3.11+, the members of
    exception groups, exactly as the interpreter would print them.
    """
    kind = type(exc)
    module = getattr(kind, "__module__", None)
    name = kind.__qualname__
    type_name = name if module in (None, "builtins") else f"{module}.{name}"
    try:
        lines = traceback.format_exception(kind, exc, exc.__traceback__)
        text = "".join(lines)
    except Exception as failure:  # pragma: no cover - traceback itself failed
        text = _describe_failure(exc, "format_exception", failure)
    return {
        "type": type_name,
        "message": safe_str(exc),
        "traceback": truncate(text),
    }


def exc_info_to_exception(exc_info: Any) -> BaseException | None:
    """Normalise the many shapes of ``exc_info`` to an exception or None."""
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1] if len(exc_info) == 3 else None
    if exc_info:
        return sys.exc_info()[1]
    return None
