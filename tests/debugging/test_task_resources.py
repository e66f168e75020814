"""Per-task CPU and RSS on task spans, and ``mptrace report``'s leak finder.

A pool whose worker keeps 20 MiB per task (a module-level list) beside a
pool whose worker allocates the same and lets it go: the first worker is
named as growing, the second is not, every task's RSS change is about
20 MiB, and a task that burns CPU tops the costliest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import read_jsonl
from task_work import LEAK, MIB, burn, churn, leak

import mptrace

TASKS = 4


def _run(jsonl: Path, start_method: str) -> dict[str, int]:
    """The run: leaky pool, churning pool, one CPU-heavy task; worker pids."""
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        ctx = mptrace.get_context(start_method)
        with ctx.Pool(1) as leaky, ctx.Pool(1) as calm:
            assert leaky.map(leak, range(TASKS), chunksize=1)[-1] == TASKS
            assert calm.map(churn, range(TASKS), chunksize=1) == [LEAK] * TASKS
            assert calm.apply(burn, (0.3,)) > 0
            pids = {
                "leaky": leaky.apply(_pid),
                "calm": calm.apply(_pid),
            }
    return pids


def _pid() -> int:
    import os

    return os.getpid()


def _tasks(events: list[dict], name: str) -> list[dict]:
    return [
        e for e in events
        if e.get("kind") == "span" and e.get("name") == name
        and (e.get("attributes") or {}).get("mptrace.span") == "task"
    ]  # fmt: skip


class TestTaskResources:
    def test_task_spans_carry_cpu_and_rss_change(self, jsonl, start_method):
        """Each leaking task grew its worker by about 20 MiB; burning shows CPU."""
        pids = _run(jsonl, start_method)
        events = read_jsonl(jsonl)
        leaks = _tasks(events, f"task {leak.__module__}.leak")
        assert len(leaks) == TASKS
        for span in leaks:
            attrs = span["attributes"]
            assert span["pid"] == pids["leaky"]
            assert 19 * MIB <= attrs["mptrace.task.memory.rss_delta"] <= 24 * MIB
            assert attrs["mptrace.task.memory.rss"] > LEAK
        # The allocator may keep the first block for the next (glibc raises its
        # mmap threshold to it): one task may grow, the others do not.
        churns = _tasks(events, f"task {churn.__module__}.churn")
        grew = [s for s in churns if s["attributes"]["mptrace.task.memory.rss_delta"]
                > 4 * MIB]  # fmt: skip
        assert len(churns) == TASKS and len(grew) <= 1
        (heavy,) = _tasks(events, f"task {burn.__module__}.burn")
        assert heavy["attributes"]["mptrace.task.cpu"] >= 0.25

    def test_report_names_the_growing_worker_and_the_costliest_task(
        self, jsonl, start_method, tmp_path
    ):
        """Text and HTML: the leaky worker grows, the calm one does not; burn is first."""
        pids = _run(jsonl, start_method)
        html = tmp_path / "report.html"
        done = subprocess.run(
            [sys.executable, "-m", "mptrace", "report", str(jsonl), "--html", str(html)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = done.stdout
        growing = out.split("workers whose memory grows across tasks:", 1)[1]
        assert f"[{pids['leaky']}] grew +{TASKS * 20}." in growing
        # its tasks: the leaks and the one that asked its pid
        assert f"over {TASKS + 1} tasks ({TASKS} of {TASKS + 1} grew it" in growing
        assert f"[{pids['calm']}]" not in growing
        costly = out.split("costliest (CPU of the worker over the task):", 1)[1]
        first = costly.strip().splitlines()[0]
        assert f"task {burn.__module__}.burn on " in first
        assert f"[{pids['calm']}]" in first
        page = html.read_text()
        assert "Workers whose memory grows" in page
        assert f"[{pids['leaky']}] grew +{TASKS * 20}." in page
        assert f"task {burn.__module__}.burn on" in page.split("id='costly'", 1)[1]


def test_a_page_from_another_thread_is_not_a_task_that_grew():
    """A task whose worker rose by a page or two (another thread of the worker
    ran meanwhile) did not grow it; the 20 MiB tasks did."""
    from mptrace._cli.report_resources import Resources, growing_lines

    resources = Resources()
    for delta in (20 * MIB, 20 * MIB, 20 * MIB, 8192, 20 * MIB):
        event = {"kind": "span", "pid": 7, "process": "ForkPoolWorker-1"}
        resources.add(event, {"mptrace.task.memory.rss_delta": delta})
    (line,) = growing_lines(resources)
    assert "over 5 tasks (4 of 5 grew it" in line, line
