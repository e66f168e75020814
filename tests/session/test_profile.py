"""MPTRACE_PROFILE: the owner and the listener note the phases of a session's
start and end, and write them when they finish; without it nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROGRAM = "import mptrace; mptrace.init(exporters=['jsonl:{out}']).shutdown()"


def _run(tmp_path: Path, profile: str | None) -> None:
    env = dict(os.environ)
    env.pop("MPTRACE_PROFILE", None)
    if profile is not None:
        env["MPTRACE_PROFILE"] = profile
    out = tmp_path / "run.jsonl"
    subprocess.run(
        [sys.executable, "-c", PROGRAM.format(out=out)], env=env, check=True, timeout=60
    )


def test_profile_marks_of_owner_and_listener(tmp_path: Path) -> None:
    path = tmp_path / "profile.jsonl"
    _run(tmp_path, str(path))
    records = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        records[record["side"]] = record
    assert set(records) == {"owner", "listener"}
    owner = [name for name, _ in records["owner"]["marks"]]
    assert owner[0] == "import" and owner[-1] == "end"
    for phase in ("listener start", "listener ready", "program", "listener exit"):
        assert phase in owner
    times = [at for _, at in records["owner"]["marks"]]
    assert times == sorted(times)
    listener = records["listener"]["marks"]
    assert [name for name, _ in listener][-1] == "listener finish"
    # One clock: the listener started after the owner started it, and it had
    # finished by the time the owner saw it exit.
    marks = dict(records["owner"]["marks"])
    assert marks["listener start"] <= listener[0][1]
    assert listener[-1][1] <= marks["listener exit"]
    assert records["listener"]["pid"] != records["owner"]["pid"]


def test_no_profile_without_the_variable(tmp_path: Path) -> None:
    _run(tmp_path, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl"]
