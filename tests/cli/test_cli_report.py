"""``mptrace report`` and ``mptrace timeline`` on real runs, and the HTML in Chromium.

The runs are those of ``test_cli.py``: a child that returns, one that raises,
one that leaves by ``os._exit(3)``, a pool map that fails on one item, and two
threads whose spans overlap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_cli import make_run, mptrace_command

from mptrace._cli.main import main
from mptrace._cli.timeline import assign_threads

Run = tuple[Path, dict[str, int]]


@pytest.fixture
def run(start_method: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The full program's file under *start_method*, and its pids."""
    return make_run(tmp_path_factory.getbasetemp(), start_method)


class TestReport:
    def test_names_the_failed_children_and_exits_1(self, run: Run) -> None:
        """The children that raised and exited 3: why, and their last records."""
        path, pids = run
        done = mptrace_command("report", str(path))
        assert done.returncode == 1, done.stderr
        out = done.stdout
        failed = out.split("Failed processes", 1)[1]
        assert f"boom[{pids['boom']}] raised ValueError: boom on purpose" in failed
        assert 'raise ValueError("boom on purpose")' in failed  # the traceback
        boom = failed.split(f"boom[{pids['boom']}]", 1)[1]
        assert "demo.worker: about to fail" in boom  # its last records
        assert f"quit3[{pids['quit3']}] exited with code 3" in failed
        assert "demo.worker: leaving with 3" in failed.split("quit3[", 1)[1]
        assert f"ok[{pids['ok']}]" not in failed
        assert re.search(r"Pool tasks: \d+, 1 failed", out)
        assert "KeyError: 5" in out
        table = out.split("Processes", 1)[1].split("Failed processes", 1)[0]
        for name in ("ok", "boom", "quit3"):
            row = rf"^\s+{pids[name]}\s+└ {name}\s"
            assert re.search(row, table, re.MULTILINE), table

    def test_a_run_without_failures_exits_0(
        self, start_method: str, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Nothing failed: exit status 0 and no failure section."""
        path, pids = make_run(tmp_path_factory.getbasetemp(), start_method, "ok")
        result = CliRunner().invoke(main, ["report", str(path)])
        assert result.exit_code == 0, result.output
        assert "Failed processes" not in result.stdout
        assert f"{pids['ok']}" in result.stdout

    def test_the_last_run_of_a_file_by_default(self, tmp_path: Path) -> None:
        """Two runs in one file: the report is about the second only."""
        failing, _ = make_run(tmp_path, "fork")
        fine, _ = make_run(tmp_path, "fork", "ok")

        def tagged(path: Path, run: str) -> str:
            return "".join(json.dumps({**json.loads(line), "run": run}) + "\n"
                           for line in path.read_text().splitlines())  # fmt: skip

        both = tmp_path / "both.jsonl"
        both.write_text(tagged(failing, "r1") + tagged(fine, "r2"))
        assert CliRunner().invoke(main, ["report", str(both)]).exit_code == 0
        first = CliRunner().invoke(main, ["report", "--run", "r1", str(both)])
        assert first.exit_code == 1
        assert "run r1" in first.stdout


class TestTimeline:
    def test_trace_events_are_valid_and_nest(self, run: Run, tmp_path: Path) -> None:
        """Every slice has pid, tid, ts and dur; slices on one thread nest."""
        path, pids = run
        out = tmp_path / "trace.json"
        done = mptrace_command("timeline", str(path), "-o", str(out))
        assert done.returncode == 0, done.stderr
        trace = json.loads(out.read_text())
        assert trace["displayTimeUnit"] == "ms"
        events = trace["traceEvents"]
        names = {e["pid"]: e["args"]["name"] for e in events
                 if e["ph"] == "M" and e["name"] == "process_name"}  # fmt: skip
        for name in ("ok", "boom", "quit3", "main"):
            assert pids[name] in names, (name, names)
        slices = [e for e in events if e["ph"] == "X"]
        assert any(e["name"].startswith("task ") for e in slices)
        assert any(e["name"] == "overlapping" for e in slices)
        threads: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for e in slices:
            for key in ("pid", "tid", "ts", "dur"):
                assert isinstance(e[key], int) and e[key] >= 0, e
            threads[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
        for key, spans in threads.items():
            assert_nested(spans, key)
        instants = [e for e in events if e["ph"] == "i"]
        assert all(e["s"] == "t" for e in instants)
        exits = {e["pid"]: e["name"] for e in instants if e["cat"] == "exit"}
        assert exits[pids["quit3"]] == "exited with code 3"

    def test_overlapping_spans_go_on_threads_of_their_own(self) -> None:
        """Two overlapping, non-nested slices never share a thread."""
        slices = [(0, 10, "a", "", {}), (5, 15, "b", "", {}), (6, 8, "c", "", {}),
                  (12, 14, "d", "", {}), (20, 30, "e", "", {})]  # fmt: skip
        placed = assign_threads(slices)
        by_tid: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for tid, s in placed:
            by_tid[tid].append((s[0], s[1]))
        for tid, spans in by_tid.items():
            assert_nested(spans, tid)
        assert len(by_tid) == 2
        assert sorted(s[2] for _, s in placed) == ["a", "b", "c", "d", "e"]


def assert_nested(spans: list[tuple[int, int]], where: object) -> None:
    """Intervals on one thread either nest or do not touch."""
    stack: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        while stack and stack[-1][1] <= start:
            stack.pop()
        assert not stack or end <= stack[-1][1], (where, stack[-1], (start, end))
        stack.append((start, end))


# -- the HTML page in a real browser --------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--window-size=1200,1400",
]  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium from the system, driven by selenium; skips without it."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.access(program, os.X_OK):
            pytest.skip(
                f"{program} is not installed (Debian: chromium, chromium-driver)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_html_report_in_chromium(browser: Any, tmp_path: Path) -> None:
    """Offline page: tree, timeline, failures in red, records filtered by process."""
    path, pids = make_run(tmp_path, "fork")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", "--html", str(page), str(path)])
    assert result.exit_code == 1
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    browser.get(page.as_uri())
    js = browser.execute_script
    assert js("return performance.getEntriesByType('resource').length") == 0
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []

    tree = {int(li.get_attribute("data-pid")): li
            for li in browser.find_elements("css selector", "#tree li")}  # fmt: skip
    assert {pids["ok"], pids["boom"], pids["quit3"], pids["main"]} <= set(tree)
    red = "rgb(204, 0, 0)"
    colour = "return getComputedStyle(arguments[0]).color"
    assert js(colour, tree[pids["boom"]].find_element("css selector", ".name")) == red
    assert js(colour, tree[pids["quit3"]]) == red
    assert js(colour, tree[pids["ok"]]) != red

    bars = browser.find_elements("css selector", "#timeline-svg rect.proc")
    assert len(bars) >= 4 and all(b.is_displayed() for b in bars)
    fill = {int(b.get_attribute("data-pid")): js("return getComputedStyle("
            "arguments[0]).fill", b) for b in bars}  # fmt: skip
    assert fill[pids["boom"]] == "rgb(221, 34, 34)" != fill[pids["ok"]]
    assert browser.find_elements("css selector", "#timeline-svg rect.task.failed")

    rows = browser.find_elements("css selector", "#records tbody tr")
    visible = [r for r in rows if r.is_displayed()]
    assert len(visible) == len(rows) > 3
    browser.find_element(
        "css selector", f"#process-filter option[value='{pids['boom']}']"
    ).click()
    visible = [r for r in rows if r.is_displayed()]
    assert visible and len(visible) < len(rows)
    assert {r.get_attribute("data-pid") for r in visible} == {str(pids["boom"])}
    assert "about to fail" in visible[0].text
    assert browser.find_element("id", "shown-count").text == str(len(visible))
    browser.find_element("css selector", "#filters input[value=info]").click()
    assert all(r.get_attribute("data-level") != "info"
               for r in rows if r.is_displayed())  # fmt: skip
