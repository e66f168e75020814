"""An event as one frame, whatever its values, and a kept frame as an event again.

The stream's safety net (``Stream.send`` never raises): an event that cannot
be encoded keeps its structure and says why; one too big for a frame is cut
to mptrace's own keys and says what it dropped.
"""

from __future__ import annotations

import json

from mptrace._participant.plain import safe_repr
from mptrace._schema import events as _events
from mptrace._schema.events import Event

_BODY = 4 + _events.PREFIX.size  # the frame's length, kind, flags, sequence


def encode(event: Event) -> bytes:
    """*event* as one frame that fits; never raises."""
    try:
        data = _events.encode(event)
    except Exception as exc:  # the last safety net: values are plain already
        safe = {
            k: v if type(v) in (int, str) else safe_repr(v) for k, v in event.items()
        }
        safe["mptrace_error"] = f"event could not be encoded: {safe_repr(exc)}"
        data = _events.encode(safe)
    if len(data) - 4 > _events.MAX_FRAME:
        data = _events.encode(_cut(event, len(data)))
    return data


#: Of an event too big for one frame, each string of mptrace's own keys keeps
#: this many characters; the program's fields are dropped.
_CUT_CHARS = 64 * 1024


def _cut(event: Event, size: int) -> Event:
    """An event too big for one frame, as one that fits and says so."""
    cut: Event = {}
    for key in _events.STRUCTURE_KEYS & event.keys():
        value = event[key]
        if type(value) is dict:  # an exception: its type, message, traceback
            cut[key] = {str(k): _short(v) for k, v in list(value.items())[:16]}
        else:
            cut[key] = _short(value)
    dropped = sorted(str(k) for k in event.keys() - _events.STRUCTURE_KEYS)
    cut["mptrace_error"] = (
        f"event of {size} bytes exceeds the {_events.MAX_FRAME} a frame holds; "
        f"cut, without its fields {', '.join(dropped)[:_CUT_CHARS]}"
    )
    return cut


def _short(value: object) -> object:
    if type(value) in (int, float, bool, type(None)):
        return value
    text = value if type(value) is str else safe_repr(value)
    return text[:_CUT_CHARS]


def decode(frame: bytes) -> Event | None:
    """A frame this process wrote, as the event it was; None if it is not one."""
    try:
        event = json.loads(frame[_BODY:])
    except ValueError:  # pragma: no cover - we wrote it
        return None
    return event if type(event) is dict else None
