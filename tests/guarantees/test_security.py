"""Security: a private socket, an authenticated handshake, and redaction of secrets."""

from __future__ import annotations

import collections
import doctest
import logging
import os
import pickle
import socket
import stat
import time
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path

import pytest
from conftest import logs_of, read_jsonl
from workers import log_in_everywhere, log_n, log_secrets

import mptrace
import mptrace.processors
from mptrace._schema import events as _events
from mptrace._schema import handshake as _handshake
from mptrace.processors import DEFAULT_SECRET_KEYS, Redact

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))
REFUSED = "refused a connection that"
SECRETS = ("hunter2-std", "tok-std", "ak-sl", "at-sl", "xak-sl")


def refusals(events: list[dict]) -> list[dict]:
    return [
        e
        for e in logs_of(events, logger="mptrace", process="mptrace-listener")
        if REFUSED in e["event"]
    ]


class TestSocket:
    def test_socket_lives_in_a_private_directory(self, session):
        """The socket's folder is mode 0700 and ours; the socket itself is not world-accessible."""
        folder = os.path.dirname(session.address)
        info = os.stat(folder)
        assert stat.S_ISDIR(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
        sock_info = os.stat(session.address)
        assert stat.S_ISSOCK(sock_info.st_mode)
        assert stat.S_IMODE(sock_info.st_mode) & 0o077 == 0

    def test_socket_directory_is_removed_at_shutdown(self, session):
        """Nothing is left behind: shutdown removes the socket's folder."""
        folder = os.path.dirname(session.address)
        session.shutdown()
        assert not os.path.exists(folder)


def _raw_exchange(address: str, payload: bytes) -> bytes:
    """Connect without a handshake, send *payload*, read until the listener hangs up."""
    got = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(address)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # closed with our bytes unread
                break
            if not chunk:
                break
            got += chunk
    return got


class _CreatesFile:
    """Unpickling this creates a file: proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_payloads(path: Path) -> dict[str, bytes]:
    """Pickles that create *path* when unpickled, sent bare or in the funnel's frames."""
    evil = {"kind": "log", "event": "evil", "x": _CreatesFile(path)}
    body = pickle.dumps(evil, pickle.HIGHEST_PROTOCOL)
    padded = pickle.dumps({**evil, "pad": "p" * 1000}, pickle.HIGHEST_PROTOCOL)
    hello = _events.encode({"kind": "hello", "pid": 1, "seq": 0})
    return {
        "framed": hello + _events.HEADER.pack(len(body)) + body,
        "framed-large": _events.HEADER.pack(len(padded))
        + padded,  # longer than any answer
        "unframed": body,
    }


class TestHandshake:
    @pytest.mark.parametrize("key", ["wrong", "empty", "one-bit-off"])
    def test_wrong_key_is_refused_and_others_still_arrive(
        self, start_method, session, jsonl, key
    ):
        """A client with a wrong key is refused and reported; legitimate records still arrive."""
        authkey = {
            "wrong": b"wrong",
            "empty": b"",
            "one-bit-off": bytes([session.child_config.authkey[0] ^ 1])
            + session.child_config.authkey[1:],
        }[key]
        with pytest.raises(AuthenticationError):
            Client(session.address, family="AF_UNIX", authkey=authkey)
        logging.getLogger("tests.security").info("parent after refusal")
        child = mptrace.get_context(start_method).Process(
            target=log_n, args=(5, "after-refusal")
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        session.shutdown()
        events = read_jsonl(jsonl)
        (warning,) = refusals(events)
        assert warning["level"] == "warning"
        assert warning["pid"] == session.listener_pid
        assert "AuthenticationError" in warning["event"]
        assert len(logs_of(events, event="parent after refusal", pid=os.getpid())) == 1
        records = logs_of(events, tag="after-refusal", pid=child.pid)
        assert [r["i"] for r in records] == list(range(5))

    def test_payload_would_create_the_file_if_unpickled(self, tmp_path):
        """Control for the test below: the payloads are live, unpickling them creates the file."""
        target = tmp_path / "control"
        body = evil_payloads(target)["unframed"]
        pickle.loads(body)
        assert target.exists()

    @pytest.mark.parametrize("variant", ["framed", "framed-large", "unframed"])
    def test_garbage_without_handshake_is_refused_and_never_unpickled(
        self, session, jsonl, tmp_path, variant
    ):
        """A client that sends pickles without handshaking is refused; nothing is unpickled."""
        target = tmp_path / "pwned"
        answer = _raw_exchange(session.address, evil_payloads(target)[variant])
        assert b"#CHALLENGE#" in answer  # the listener asked first, and got no answer
        logging.getLogger("tests.security").info("legitimate after garbage")
        session.shutdown()
        assert not target.exists()
        events = read_jsonl(jsonl)
        assert len(refusals(events)) == 1
        assert not logs_of(events, event="evil")
        assert not [e for e in events if "evil" in str(e.get("event"))]
        assert (
            len(logs_of(events, event="legitimate after garbage", pid=os.getpid())) == 1
        )

    def test_a_silent_client_does_not_hold_up_others(
        self, start_method, session, jsonl
    ):
        """While a connection sits in its handshake, a child still joins and logs at once."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.connect(session.address)
            t0 = time.monotonic()
            child = mptrace.get_context(start_method).Process(
                target=log_n, args=(3, "beside-silent")
            )
            child.start()
            child.join(60)
            elapsed = time.monotonic() - t0
        assert child.exitcode == 0
        # Handshakes one at a time would hold the child until the silent one timed out.
        assert elapsed < _handshake.HANDSHAKE_TIMEOUT, elapsed
        session.shutdown()
        events = read_jsonl(jsonl)
        assert len(logs_of(events, tag="beside-silent", pid=child.pid)) == 3
        assert len(refusals(events)) == 1


class TestRedactionInSessions:
    def _check_default(self, events: list[dict], pid: int, tag: str) -> None:
        (std,) = logs_of(events, event="stdlib secrets", pid=pid, tag=tag)
        assert std["password"] == "[redacted]"
        assert std["headers"] == {"Authorization": "[redacted]", "Accept": "text/plain"}
        assert std["user"] == "bob"
        assert std["ssn"] == "123-45-6789"  # not a default key
        (slog,) = logs_of(events, event="structlog secrets", pid=pid, tag=tag)
        assert slog["api_key"] == "[redacted]"
        assert slog["nested"] == {
            "list": [{"access_token": "[redacted]", "n": 1}],
            "X-Api-Key": "[redacted]",
        }
        assert slog["tokens_used"] == 5
        assert slog["ssn"] == "987-65-4321"

    def test_default_keys_are_redacted_in_the_parent(self, session, jsonl):
        """stdlib extra=, structlog key-values and nested dicts lose their secret values."""
        log_secrets("parent")
        session.shutdown()
        self._check_default(read_jsonl(jsonl), os.getpid(), "parent")
        raw = jsonl.read_text("utf-8")
        for secret in SECRETS:
            assert secret not in raw

    def test_default_keys_are_redacted_in_a_child(self, start_method, session, jsonl):
        """The same holds for records from a child process."""
        child = mptrace.get_context(start_method).Process(
            target=log_secrets, args=("child",)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        session.shutdown()
        self._check_default(read_jsonl(jsonl), child.pid, "child")
        raw = jsonl.read_text("utf-8")
        for secret in SECRETS:
            assert secret not in raw

    def test_secrets_inside_dict_subclasses_are_redacted(self, session, jsonl):
        """A secret under an OrderedDict or defaultdict is redacted like one under a dict."""
        headers = collections.OrderedDict(
            Authorization="Bearer od-secret", Accept="*/*"
        )
        cookies = collections.defaultdict(str, session_id="dd-secret")
        logging.getLogger("tests.security").info(
            "subclassed", extra={"headers": headers, "cookies": cookies}
        )
        mptrace.get_logger("tests.security").info("subclassed", headers=headers)
        session.shutdown()
        raw = jsonl.read_text("utf-8")
        assert "od-secret" not in raw
        assert "dd-secret" not in raw
        records = logs_of(read_jsonl(jsonl), event="subclassed")
        assert len(records) == 2

    def test_secrets_nested_deeper_than_plain_copies_are_redacted(self, session, jsonl):
        """A secret seven dicts down (below plain's MAX_DEPTH) does not leak through a repr."""
        deep: dict = {"password": "deep-secret"}
        for name in "gfedcba":
            deep = {name: deep}
        logging.getLogger("tests.security").info("deep", extra={"deep": deep})
        mptrace.get_logger("tests.security").info("deep", deep=deep)
        session.shutdown()
        assert len(logs_of(read_jsonl(jsonl), event="deep")) == 2
        assert "deep-secret" not in jsonl.read_text("utf-8")

    def test_a_list_of_keys_redacts_only_those(self, jsonl):
        """redact=["ssn"] redacts ssn and nothing of the default keys."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], redact=["ssn"]):
            log_secrets("custom")
        events = read_jsonl(jsonl)
        (std,) = logs_of(events, event="stdlib secrets")
        assert std["ssn"] == "[redacted]"
        assert std["password"] == "hunter2-std"
        assert std["headers"]["Authorization"] == "Bearer tok-std"
        (slog,) = logs_of(events, event="structlog secrets")
        assert slog["ssn"] == "[redacted]"
        assert slog["api_key"] == "ak-sl"

    def test_redact_false_turns_redaction_off(self, jsonl):
        """redact=False passes every value through."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"], redact=False):
            log_secrets("off")
        events = read_jsonl(jsonl)
        (std,) = logs_of(events, event="stdlib secrets")
        assert std["password"] == "hunter2-std"
        assert std["headers"]["Authorization"] == "Bearer tok-std"
        (slog,) = logs_of(events, event="structlog secrets")
        assert slog["nested"]["list"][0]["access_token"] == "at-sl"


class TestRedactProcessor:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "PASSWORD",
            "db_password",
            "X-Api-Key",
            "api-key",
            "access_token",
            "token_count",
            "Set-Cookie",
            "cookie_jar",
            "session_id",
            "aws_secret",
            "private_key",
            "Authorization",
            "proxy-authorization",
            "db.password",
            "http.request.header.authorization",
            "mptrace.args.password",
            "X-Api-Key",
            "b'password'",
            "accessToken",
            "user password",
            "old_password_hash",
        ],
    )
    def test_default_keys_match(self, key):
        """A default key as a run of the key's words: any case, split at '_', '.',
        '-', spaces, quotes and camelCase."""
        assert Redact().is_secret(key)
        assert Redact()(None, "info", {key: "v"}) == {key: "[redacted]"}

    @pytest.mark.parametrize(
        "key",
        [
            "tokens_used",
            "passwords",
            "mytoken",
            "secretary",
            "user",
            "event",
            "key",
            "",
        ],
    )
    def test_other_keys_do_not_match(self, key):
        """A default key inside a longer word, without an '_', does not match."""
        assert not Redact().is_secret(key)
        assert Redact()(None, "info", {key: "v"}) == {key: "v"}

    def test_custom_keys_are_normalised_too(self):
        """Given keys are lower-cased with '-' read as '_', like the keys they are matched to."""
        redact = Redact(["X-SSN"])
        for key in ("x_ssn", "X-Ssn", "customer_x_ssn", "x_ssn_last4"):
            assert redact.is_secret(key), key
        assert not redact.is_secret("ssn")
        assert not redact.is_secret("password")

    def test_nested_dicts_and_lists_at_any_depth(self):
        """Secrets inside dicts inside lists inside dicts are redacted; other values are kept."""
        event = {
            "event": "e",
            "config": {
                "db": {"password": "p", "host": "h"},
                "items": [{"token": "t"}, 3, "x"],
                3: {"password": "under a non-str key"},
            },
            "matrix": [[{"api_key": "k"}]],
        }
        assert Redact()(None, "info", event) == {
            "event": "e",
            "config": {
                "db": {"password": "[redacted]", "host": "h"},
                "items": [{"token": "[redacted]"}, 3, "x"],
                3: {"password": "[redacted]"},
            },
            "matrix": [[{"api_key": "[redacted]"}]],
        }

    def test_any_depth_of_nesting(self):
        """As documented, a secret is redacted however deep it sits (here 12 dicts down)."""
        event: dict = {"token": "deep"}
        for i in range(12):
            event = {f"level{i}": event}
        out = Redact()(None, "info", event)
        for i in reversed(range(12)):
            out = out[f"level{i}"]
        assert out == {"token": "[redacted]"}

    def test_a_whole_nested_value_is_replaced(self):
        """A secret key whose value is a dict has the whole dict replaced."""
        out = Redact()(None, "info", {"credentials": {"user": "u", "pw": "p"}})
        assert out == {"credentials": "[redacted]"}

    def test_custom_placeholder(self):
        """The placeholder can be chosen."""
        assert Redact(["pin"], placeholder="***")(None, "info", {"pin": 1234}) == {
            "pin": "***"
        }

    def test_a_single_string_is_a_type_error(self):
        """Redact("password") would match letters; it is refused with TypeError."""
        with pytest.raises(TypeError, match="iterable of key names"):
            Redact("password")  # type: ignore[arg-type]

    def test_the_default_keys(self):
        """Redact() uses DEFAULT_SECRET_KEYS."""
        assert Redact().keys == DEFAULT_SECRET_KEYS

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_pickle_round_trip(self, protocol):
        """Redact travels to the listener: keys, placeholder and matching survive every protocol."""
        redact = Redact(["SSN", "X-Pin"], placeholder="<gone>")
        redact.is_secret("ssn")  # fill the cache
        back = pickle.loads(pickle.dumps(redact, protocol))
        assert type(back) is Redact
        assert back.keys == ("SSN", "X-Pin")
        assert back.placeholder == "<gone>"
        event = {"ssn": 1, "X-Pin": 2, "name": 3}
        assert back(None, "info", dict(event)) == {
            "ssn": "<gone>",
            "X-Pin": "<gone>",
            "name": 3,
        }

    def test_docstring_examples(self):
        """The examples in mptrace.processors run as documented."""
        result = doctest.testmod(mptrace.processors)
        assert result.attempted > 0
        assert result.failed == 0


class TestRedactionReachesEverything:
    def test_arguments_attributes_events_and_bytes_keys(self, start_method, jsonl):
        """record_args, span and event attributes under dotted or dashed names,
        dicts and lists of dicts given as arguments, and bytes keys: no secret
        reaches the file, from the parent or a child, and the rest does."""
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            log_in_everywhere()
            child = mptrace.get_context(start_method).Process(target=log_in_everywhere)
            child.start()
            child.join(60)
        assert child.exitcode == 0
        raw = jsonl.read_text("utf-8")
        assert "SECRET" not in raw, raw[raw.index("SECRET") - 80 :][:160]
        spans = [e for e in read_jsonl(jsonl) if e.get("name") == "tr_login"]
        assert len(spans) == 2
        for span in spans:
            attrs = span["attributes"]
            assert attrs["mptrace.args.user"] == "ann"
            assert attrs["mptrace.args.password"] == "[redacted]"
            assert attrs["mptrace.args.options.token"] == "[redacted]"
            assert attrs["mptrace.args.options.retries"] == 3
            assert attrs["mptrace.args.headers.0.authorization"] == "[redacted]"
            assert attrs["db.password"] == "[redacted]"
            assert attrs["http.request.header.authorization"] == "[redacted]"
            (event,) = [e for e in span["events"] if e["name"] == "retry"]
            assert event["attributes"] == {"X-Api-Key": "[redacted]", "attempt": 2}
        blobs = logs_of(read_jsonl(jsonl), event="bytes key")
        assert [b["blob"] for b in blobs] == [{"b'password'": "[redacted]"}] * 2
