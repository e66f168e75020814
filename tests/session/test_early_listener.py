"""The listener starts before init() checks its settings: a setting that fails
leaves no listener process and no session folder behind."""

from __future__ import annotations

import os
import tempfile

import psutil
import pytest

import mptrace


def _folders() -> set[str]:
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = "/tmp"
    return {n for n in os.listdir(base) if n.startswith(f"mptrace-{os.getpid()}-")}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"exporters": ["no-such-exporter"]},
        {"level": "LOUDEST"},
        {"exporters": ["jsonl:/no/such/folder/x.jsonl"]},
    ],
)
def test_a_bad_setting_leaves_no_listener_and_no_folder(kwargs: dict) -> None:
    before = {p.pid for p in psutil.Process().children()}
    folders = _folders()
    with pytest.raises(mptrace.ConfigurationError):
        mptrace.init(**kwargs)
    assert [p for p in psutil.Process().children() if p.pid not in before] == []
    assert _folders() <= folders  # a lingering listener may remove its own
    # And the next session starts as usual.
    with mptrace.init(exporters=["memory"]) as session:
        pass
    assert session.events() is not None
