"""Unit tests: plain data (``mptrace._participant.plain``), frames (``mptrace._schema.events``, ``mptrace._listener.transport``), ChildConfig."""

from __future__ import annotations

import json
import pickle
import sys

import pytest

from mptrace._listener import transport as _transport
from mptrace._participant.plain import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_VALUE_CHARS,
    exc_info_to_exception,
    exception_dict,
    plain,
    safe_repr,
    safe_str,
    truncate,
)
from mptrace._schema import events as _events
from mptrace._schema.config import ChildConfig

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("str failed on purpose")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed on purpose")


class UnsayableError(Exception):
    """An exception whose own text cannot be had either."""

    def __str__(self) -> str:
        raise UnsayableError()


class SayNothing:
    def __str__(self) -> str:
        raise UnsayableError()

    __repr__ = __str__


class StrSubclass(str):
    pass


class ReturnsStrSubclass:
    def __str__(self) -> str:
        return StrSubclass("sub")

    __repr__ = __str__


class ReturnsInt:
    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


class TestTruncate:
    def test_text_up_to_the_limit_is_unchanged(self):
        """A string of exactly the limit is returned as it is."""
        text = "a" * 10
        assert truncate(text, 10) is text

    def test_longer_text_is_cut_and_says_how_much(self):
        """One character over the limit: cut to the limit, the marker counts 1."""
        assert truncate("a" * 11, 10) == "a" * 10 + "…[truncated 1 chars]"

    def test_default_limit_is_max_value_chars(self):
        """Without a limit, MAX_VALUE_CHARS characters survive and the rest is counted."""
        out = truncate("z" * (MAX_VALUE_CHARS + 5))
        assert out == "z" * MAX_VALUE_CHARS + "…[truncated 5 chars]"

    def test_counts_characters_not_bytes(self):
        """The cap and the count are in characters, whatever their UTF-8 size."""
        assert truncate("é" * 5 + "€" * 5, 5) == "é" * 5 + "…[truncated 5 chars]"


class TestSafeStrAndRepr:
    def test_safe_str_of_ordinary_objects(self):
        """safe_str is str() when str() works."""
        assert safe_str(12) == "12"
        assert safe_str("text") == "text"

    def test_safe_str_placeholder_names_type_and_failure(self):
        """A raising __str__ gives a placeholder naming the type, the call and the error."""
        assert safe_str(BadStr()) == (
            "<str() of BadStr object failed: RuntimeError: str failed on purpose>"
        )

    def test_safe_repr_placeholder_names_type_and_failure(self):
        """A raising __repr__ gives a placeholder naming the type, the call and the error."""
        assert safe_repr(BadRepr()) == (
            "<repr() of BadRepr object failed: RuntimeError: repr failed on purpose>"
        )

    def test_failure_whose_own_text_fails(self):
        """When the exception from __str__ cannot be printed either, its type is named."""
        assert (
            safe_str(SayNothing())
            == "<str() of SayNothing object failed: UnsayableError>"
        )
        assert (
            safe_repr(SayNothing())
            == "<repr() of SayNothing object failed: UnsayableError>"
        )

    def test_a_str_subclass_result_becomes_a_plain_str(self):
        """A __str__ returning a str subclass gives an exact str (safe to pickle anywhere)."""
        for func in (safe_str, safe_repr):
            out = func(ReturnsStrSubclass())
            assert out == "sub" and type(out) is str

    def test_a_non_str_result_gives_a_placeholder(self):
        """A __str__ returning an int makes str() raise TypeError: placeholder, no raise."""
        out = safe_str(ReturnsInt())
        assert out.startswith("<str() of ReturnsInt object failed: TypeError: ")

    def test_long_results_are_truncated(self):
        """safe_str and safe_repr cap their result like every other string."""
        big = "q" * (MAX_VALUE_CHARS + 3)
        assert safe_str(big) == "q" * MAX_VALUE_CHARS + "…[truncated 3 chars]"
        assert safe_repr(big).endswith("…[truncated 5 chars]")  # two quotes more


class TestPlain:
    @pytest.mark.parametrize(
        "value", [0, -3, 2**80, 1.5, -0.0, True, False, None, "", "s"]
    )
    def test_scalars_pass_through_unchanged(self, value):
        """str, int, float, bool and None are returned as they are, type included."""
        out = plain(value)
        assert out == value and type(out) is type(value)

    @pytest.mark.parametrize("sign", [1, -1])
    def test_ints_too_long_for_decimal_text_become_hexadecimal(self, sign):
        """Past 4,300 digits ``str(int)`` raises; the value still encodes, exactly."""
        value = sign * 10**5000
        out = plain(value)
        assert out.startswith(f"<int of {value.bit_length()} bits: ")
        assert int(out.split(": ", 1)[1][:-1], 16) == value
        _events.to_json({"n": out})  # and it encodes

    def test_int_subclasses_become_ints(self):
        """An IntEnum or other int subclass is written as its value, not a repr."""
        import enum

        class Colour(enum.IntEnum):
            RED = 1

        out = plain(Colour.RED)
        assert out == 1 and type(out) is int

    @pytest.mark.parametrize(
        "value, expected",
        [
            ({1: "a", "1": "b"}, {"int:1": "a", "1": "b"}),
            ({"1": "b", 1: "a"}, {"1": "b", "int:1": "a"}),
            ({1: "a", (1,): "c"}, {"1": "a", "(1,)": "c"}),
            ({b"k": 1, "b'k'": 2}, {"bytes:b'k'": 1, "b'k'": 2}),
        ],
    )
    def test_keys_that_collide_as_text_keep_both_values(self, value, expected):
        """A non-str key whose repr another key already has is named with its type."""
        assert plain(value) == expected

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_non_finite_floats_become_text(self, value):
        """JSON has no NaN or infinity: such floats arrive as the text Python prints."""
        assert plain(value) == repr(value)
        assert plain([value]) == [repr(value)]

    def test_tuples_become_lists_and_nesting_is_kept(self):
        """Lists, tuples and dicts are copied as lists and dicts, recursively."""
        value = {"a": (1, [2, {"b": (3, None)}]), "c": {"d": True}}
        assert plain(value) == {"a": [1, [2, {"b": [3, None]}]], "c": {"d": True}}

    def test_other_objects_become_their_repr(self):
        """A set, bytes or a custom object arrive as their repr; a bad repr as a placeholder."""
        assert plain({1, 2}) == repr({1, 2})
        assert plain(b"\xff") == "b'\\xff'"
        assert plain(BadRepr()) == (
            "<repr() of BadRepr object failed: RuntimeError: repr failed on purpose>"
        )

    def test_non_string_keys_become_their_repr(self):
        """Dict keys that are not str arrive as their repr, values still plain."""
        assert plain({1: (1,), (2, 3): "x", None: 0}) == {
            "1": [1],
            "(2, 3)": "x",
            "None": 0,
        }

    def test_long_strings_are_truncated_at_any_depth(self):
        """A string over MAX_VALUE_CHARS is cut whether top-level or nested."""
        big = "w" * (MAX_VALUE_CHARS + 1)
        cut = "w" * MAX_VALUE_CHARS + "…[truncated 1 chars]"
        assert plain(big) == cut
        assert plain({"k": [big]}) == {"k": [cut]}

    def test_nesting_deeper_than_max_depth_becomes_text(self):
        """Containers are copied MAX_DEPTH levels deep; what is below becomes text."""
        value: object = ["leaf"]
        for _ in range(MAX_DEPTH):
            value = [value]
        out = plain(value)
        for _ in range(MAX_DEPTH):
            assert type(out) is list and len(out) == 1
            out = out[0]
        assert type(out) is str

    def test_a_self_referencing_list_does_not_recurse_forever(self):
        """A list that contains itself ends at MAX_DEPTH in a repr."""
        loop: list[object] = [1]
        loop.append(loop)
        out = plain(loop)
        for _ in range(MAX_DEPTH):
            assert out[0] == 1
            out = out[1]
        assert type(out) is str

    def test_long_lists_keep_max_items_and_count_the_rest(self):
        """A list of MAX_ITEMS + 7 keeps MAX_ITEMS items and says 7 more were left."""
        out = plain(list(range(MAX_ITEMS + 7)))
        assert out[:MAX_ITEMS] == list(range(MAX_ITEMS))
        assert out[MAX_ITEMS:] == ["…[7 more items]"]
        assert plain(list(range(MAX_ITEMS))) == list(range(MAX_ITEMS))

    def test_long_dicts_keep_max_items_and_count_the_rest(self):
        """A dict of MAX_ITEMS + 2 keeps MAX_ITEMS items and says 2 more were left."""
        out = plain({f"k{i}": i for i in range(MAX_ITEMS + 2)})
        assert len(out) == MAX_ITEMS + 1
        assert out["…"] == "[2 more items]"
        assert (
            out["k0"] == 0 and f"k{MAX_ITEMS - 1}" in out and f"k{MAX_ITEMS}" not in out
        )

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_the_result_pickles_with_every_protocol(self, protocol):
        """Whatever went in, what comes out round-trips through pickle unchanged."""
        import threading

        value = {
            "lock": threading.Lock(),
            "gen": (i for i in ()),
            "bad": BadRepr(),
            "nested": [{"x": (1.5, None)}],
            3: b"\x00",
        }
        out = plain(value)
        assert pickle.loads(pickle.dumps(out, protocol)) == out


def _raise_chain() -> BaseException:
    try:
        try:
            raise KeyError("inner")
        except KeyError as cause:
            raise ValueError("outer") from cause
    except ValueError as exc:
        return exc


class TestExceptionDict:
    def test_builtin_exception(self):
        """A builtin exception's type has no module; message and traceback as printed."""
        exc = _raise_chain()
        out = exception_dict(exc)
        assert out["type"] == "ValueError"
        assert out["message"] == "outer"
        assert out["traceback"].startswith("Traceback (most recent call last):")
        assert "KeyError: 'inner'" in out["traceback"]
        assert "The above exception was the direct cause" in out["traceback"]
        assert out["traceback"].rstrip("\n").endswith("ValueError: outer")

    def test_user_exception_type_is_qualified_by_module(self):
        """A user exception's type is module.qualname."""
        out = exception_dict(UnsayableError.__new__(UnsayableError))
        assert out["type"] == f"{__name__}.UnsayableError"

    def test_exception_whose_str_raises(self):
        """Its message becomes a placeholder; the traceback is still there."""
        try:
            raise UnsayableError()
        except UnsayableError as exc:
            out = exception_dict(exc)
        assert (
            out["message"] == "<str() of UnsayableError object failed: UnsayableError>"
        )
        assert "UnsayableError" in out["traceback"]

    def test_exception_never_raised_has_no_frames(self):
        """An exception that was never raised formats as its last line only."""
        assert exception_dict(KeyError("gone")) == {
            "type": "KeyError",
            "message": "'gone'",
            "traceback": "KeyError: 'gone'\n",
        }

    def test_huge_message_is_truncated(self):
        """The message and the traceback are capped like any other string."""
        out = exception_dict(ValueError("m" * (MAX_VALUE_CHARS + 10)))
        assert out["message"].endswith("…[truncated 10 chars]")
        assert len(out["traceback"]) < MAX_VALUE_CHARS + 40
        assert "…[truncated " in out["traceback"]

    @pytest.mark.skipif(
        sys.version_info < (3, 11), reason="exception groups are Python 3.11+"
    )
    def test_exception_group_members_are_in_the_traceback(self):
        """An exception group's traceback shows each member."""
        group = ExceptionGroup(  # noqa: F821 - a builtin from 3.11; skipped before
            "two", [ValueError("first member"), TypeError("second member")]
        )
        text = exception_dict(group)["traceback"]
        assert "ValueError: first member" in text and "TypeError: second member" in text

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_the_result_pickles_with_every_protocol(self, protocol):
        """The exception dict is plain: it round-trips through every pickle protocol."""
        out = exception_dict(_raise_chain())
        assert pickle.loads(pickle.dumps(out, protocol)) == out


class TestExcInfoToException:
    def test_shapes(self):
        """An exception, a 3-tuple, True inside except, and falsy values."""
        exc = ValueError("v")
        assert exc_info_to_exception(exc) is exc
        assert exc_info_to_exception((ValueError, exc, None)) is exc
        assert exc_info_to_exception((None, None, None)) is None
        assert exc_info_to_exception(()) is None
        assert exc_info_to_exception(None) is None
        assert exc_info_to_exception(False) is None
        assert exc_info_to_exception(True) is None  # nothing being handled
        try:
            raise KeyError("current")
        except KeyError as current:
            assert exc_info_to_exception(True) is current


def frame(payload: bytes) -> bytes:
    """One frame as a writer sends it: 4-byte big-endian length, then the bytes."""
    return _events.HEADER.pack(len(payload)) + payload


PAYLOADS = [
    b"a",
    "é".encode() * 300,
    b"",  # an empty frame is still a frame
    bytes(range(256)),
    b"\x00\x00\x00\x05 header-like bytes inside a body",
]
STREAM = b"".join(frame(p) for p in PAYLOADS)


class TestFrameReader:
    def test_frames_split_at_every_byte_boundary_reassemble(self):
        """Cut the stream in two at each byte: the same frames come out, in order."""
        for cut in range(len(STREAM) + 1):
            reader = _transport.FrameReader()
            bodies = reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:])
            assert [bytes(b) for b in bodies] == PAYLOADS, cut
            assert reader.pending == 0

    def test_frames_split_at_every_pair_of_boundaries_reassemble(self):
        """Cut in three at every pair of bytes: still the same frames, in order."""
        data = b"".join(frame(p) for p in (b"xy", b"", b"abc"))
        for first in range(len(data) + 1):
            for second in range(first, len(data) + 1):
                reader = _transport.FrameReader()
                bodies = []
                for part in (data[:first], data[first:second], data[second:]):
                    bodies += [bytes(b) for b in reader.feed(part)]
                assert bodies == [b"xy", b"", b"abc"], (first, second)

    def test_byte_by_byte_feeding(self):
        """Fed one byte at a time, each frame comes out exactly when its last byte arrives."""
        ends = []
        pos = 0
        for payload in PAYLOADS:
            pos += 4 + len(payload)
            ends.append(pos)
        reader = _transport.FrameReader()
        got = []
        for i in range(len(STREAM)):
            for body in reader.feed(STREAM[i : i + 1]):
                got.append((i + 1, bytes(body)))
        assert got == list(zip(ends, PAYLOADS))

    def test_bodies_stay_valid_after_later_feeds(self):
        """A body returned by one feed is not changed by the feeds after it."""
        reader = _transport.FrameReader()
        (first,) = reader.feed(frame(b"first") + frame(b"sec")[:3])
        reader.feed(frame(b"sec")[3:] + frame(b"third"))
        assert bytes(first) == b"first"

    def test_pending_counts_an_unfinished_frame(self):
        """pending is the bytes of a frame not yet complete; 0 once it is."""
        whole = frame(b"half a record")
        reader = _transport.FrameReader()
        assert reader.pending == 0
        assert reader.feed(whole[:3]) == []
        assert reader.pending == 3
        assert reader.feed(whole[3:-1]) == []
        assert reader.pending == len(whole) - 1
        (body,) = reader.feed(whole[-1:] + whole[:5])
        assert bytes(body) == b"half a record"
        assert reader.pending == 5

    def test_empty_feed(self):
        """Feeding nothing yields nothing and keeps what was pending."""
        reader = _transport.FrameReader()
        assert reader.feed(b"") == []
        reader.feed(b"\x00\x00")
        assert reader.feed(b"") == [] and reader.pending == 2

    def test_an_oversized_length_raises_value_error(self):
        """A header announcing more than MAX_FRAME bytes is a corrupt stream."""
        reader = _transport.FrameReader()
        with pytest.raises(ValueError, match="exceeds"):
            reader.feed(_events.HEADER.pack(_events.MAX_FRAME + 1))

    def test_an_oversized_length_after_good_frames_raises(self):
        """Corruption is detected even after complete frames in the same chunk."""
        reader = _transport.FrameReader()
        with pytest.raises(ValueError):
            reader.feed(frame(b"ok") + b"\xff\xff\xff\xff")

    def test_max_frame_itself_is_accepted(self):
        """A header of exactly MAX_FRAME is legal: the reader waits for the body."""
        reader = _transport.FrameReader()
        assert reader.feed(_events.HEADER.pack(_events.MAX_FRAME)) == []
        assert reader.pending == 4


def decode(body: memoryview | bytes) -> tuple[int, int, object]:
    """(kind code, sequence number, event) of a frame body, as the listener reads it."""
    kind, _flags, seq = _events.PREFIX.unpack_from(body)
    return kind, seq, json.loads(bytes(body[_events.PREFIX.size :]))


EVENTS = [
    {"kind": "log", "event": "a", "seq": 1},
    {
        "kind": "log",
        "event": "é" * 300,
        "seq": 2,
        "nested": {"x": [1, 2.5, None, True]},
    },
    {"kind": "hello", "pid": 5, "seq": 0},
    {"kind": "log", "event": "lone \udcff", "seq": 3},
]


class TestEncode:
    def test_encoded_frames_read_back_to_the_same_events(self):
        """encode, FrameReader and the body's prefix and JSON give back every event."""
        data = b"".join(_events.encode(e) for e in EVENTS)
        reader = _transport.FrameReader()
        got = [decode(body) for body in reader.feed(data)]
        assert got == [(_events.KIND_CODES[e["kind"]], e["seq"], e) for e in EVENTS]

    def test_the_length_counts_the_whole_body(self):
        """The header's length is the number of bytes after it."""
        data = _events.encode(EVENTS[1])
        assert _events.HEADER.unpack_from(data)[0] == len(data) - 4

    def test_bodies_are_valid_utf8_even_with_lone_surrogates(self):
        """A lone surrogate is written as an escape: the body is valid UTF-8."""
        body = _events.encode(EVENTS[3])[4 + _events.PREFIX.size :]
        body.decode("utf-8")
        assert b"\\udcff" in body


CONFIG = ChildConfig(
    address="/tmp/mptrace-x/funnel.sock",
    authkey=bytes(range(32)),
    level=10,
    block_timeout=2.5,
    structlog=True,
    session_id="mptrace-x",
    tracing=False,
)


class TestChildConfig:
    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_pickle_round_trip(self, protocol):
        """Every field survives every pickle protocol (it travels to spawn children)."""
        back = pickle.loads(pickle.dumps(CONFIG, protocol))
        assert back == CONFIG
        assert back.authkey == CONFIG.authkey and back.tracing is False

    def test_repr_never_shows_the_key(self):
        """repr names the address and session but not the authentication key."""
        text = repr(CONFIG)
        assert "funnel.sock" in text and "mptrace-x" in text
        assert "authkey" not in text
        assert repr(CONFIG.authkey) not in text and CONFIG.authkey.hex() not in text

    def test_frozen(self):
        """A ChildConfig cannot be changed once made."""
        import dataclasses

        with pytest.raises(dataclasses.FrozenInstanceError):
            CONFIG.level = 0  # type: ignore[misc]
