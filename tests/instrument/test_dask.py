"""Dask distributed: each task a span under the span that submitted it.

The programs run as a user runs them (``tests/programs/dask_work.py``): a
``LocalCluster`` of worker processes under ``init()``, started with each
start method Dask lets the user choose; and a scheduler with two
``dask worker`` processes, each under ``mptrace run`` with a session of its
own, as on separate hosts, all exporting to one OTLP receiver.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_jsonl
from otlp_receiver import OtlpReceiver

pytest.importorskip("distributed")

PROGRAM = Path(__file__).resolve().parent.parent / "programs" / "dask_work.py"
N = 200
#: The spans each way of submitting ran under; ``build`` made a graph that
#: ``compute_later`` computed.
PHASES = {"by_submit", "by_map", "by_delayed", "by_bag", "compute_later"}


def run_work(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(PROGRAM), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def check_task_tree(spans: list[dict], records: list[dict]) -> None:
    """One trace; every task span under the span that submitted it, every
    ``inner`` span under a task span, every record in its task's span, and
    no span under a parent that was never exported."""
    by_id = {s["span_id"]: s for s in spans}
    name_of = {i: s["name"] for i, s in by_id.items()}
    tasks = [s for s in spans if "dask.key" in s["attributes"]]
    inner = [s for s in spans if s["name"] == "inner"]
    assert len({s["trace_id"] for s in tasks + inner}) == 1
    assert len(inner) == N
    task_ids = {s["span_id"] for s in tasks}
    assert all(s["parent_span_id"] in task_ids for s in inner)
    parents = collections.Counter(name_of.get(s["parent_span_id"]) for s in tasks)
    assert set(parents) == PHASES, parents
    for phase in PHASES - {"by_bag"}:  # a bag's tasks are its partitions
        assert parents[phase] == N // 5, parents
    assert [s for s in spans if s.get("parent_span_id") not in (None, *by_id)] == []
    assert sorted(r["i"] for r in records) == list(range(N))
    assert {r["span_id"] for r in records} <= task_ids
    assert all(r["trace_id"] == inner[0]["trace_id"] for r in records)


def test_tasks_are_spans_under_the_span_that_submitted_them(start_method, tmp_path):
    """A LocalCluster of worker processes under init(): 200 tasks through
    submit, map, delayed and a bag, and a graph built under one span and
    computed under another, are spans in the run's one trace."""
    jsonl = tmp_path / "run.jsonl"
    proc = run_work("local", start_method, str(N), str(jsonl))
    assert f"done {N}" in proc.stdout
    events = read_jsonl(jsonl)
    spans = [e for e in events if e["kind"] == "span"]
    records = [e for e in events if e.get("logger") == "dask_work"]
    check_task_tree(spans, records)
    assert len({e["trace_id"] for e in spans}) == 1  # the workers' spans too
    assert not [e for e in events if e.get("logger") == "mptrace" and "lost" in e]


def test_a_cluster_of_threads_in_the_program_gives_the_same_tree(tmp_path):
    """Workers in the program's own process (``processes=False``): two
    workers' threads, where the submitting span is current too, still put
    each record and ``@traced`` span under its own task's span."""
    jsonl = tmp_path / "run.jsonl"
    run_work("local", "threads", str(N), str(jsonl))
    events = read_jsonl(jsonl)
    spans = [e for e in events if e["kind"] == "span"]
    check_task_tree(spans, [e for e in events if e.get("logger") == "dask_work"])


def test_a_local_cluster_comes_up_20_times_in_a_row(start_method, tmp_path):
    """Twenty sessions in a row (five under fork and forkserver, which Dask
    does not start by default), each with a LocalCluster of two worker
    processes and a task: none hangs, each task is a span of its run."""
    jsonl = tmp_path / "run.jsonl"
    times = 20 if start_method == "spawn" else 5
    proc = run_work("up", start_method, str(times), str(jsonl))
    assert f"sessions {times}" in proc.stdout
    spans = [e for e in read_jsonl(jsonl) if e["kind"] == "span"]
    by_id = {s["span_id"]: s for s in spans}
    inner = [s for s in spans if s["name"] == "inner"]
    assert len({s["run"] for s in inner}) == times
    assert all(by_id[s["parent_span_id"]]["name"] == "task inner" for s in inner)


def test_a_task_that_ends_its_worker_keeps_its_records_and_an_error_span(
    start_method, tmp_path
):
    """A task logs 5 records and os._exit(3)s; Dask tries it until it gives
    up: each try's 5 records are in, each try is an error task span cut
    short, and each worker that ran it exited 3."""
    jsonl = tmp_path / "run.jsonl"
    proc = run_work("crash", start_method, "5", str(jsonl))
    assert "raised KilledWorker" in proc.stdout
    events = read_jsonl(jsonl)
    tries = [e for e in events if e["kind"] == "span" and e["name"] == "task crashing"]
    assert tries
    assert all(s["status"] == "error" for s in tries)
    assert all(s["attributes"]["mptrace.span.cut"] is True for s in tries)
    records = [e for e in events if e.get("event") == "before the crash"]
    by_try = collections.Counter(r["span_id"] for r in records)
    assert by_try == {s["span_id"]: 5 for s in tries}
    pids = {s["attributes"]["process.pid"] for s in tries}
    exits = {
        e["target_pid"]: e["exitcode"]
        for e in events
        if e.get("transition") == "exited" and e["target_pid"] in pids
    }
    assert exits == dict.fromkeys(pids, 3)


def test_hosts_with_a_session_each_export_one_trace_to_one_gateway(tmp_path):
    """A scheduler, two ``dask worker`` processes each under ``mptrace run``
    (a session each, as on two hosts) and a client program under ``mptrace
    run``, all exporting OTLP to one receiver: the task spans the workers'
    sessions export are in the client's trace, under the spans that
    submitted them, and each session says whose it is."""
    scheduler_file = tmp_path / "scheduler.json"
    with OtlpReceiver() as rx:
        env = {**os.environ, "MPTRACE_EXPORTERS": f"otlp:{rx.grpc_endpoint}"}
        run = [sys.executable, "-m", "mptrace", "run"]
        where = ["--scheduler-file", str(scheduler_file), "--host", "127.0.0.1"]
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", *where, "--no-dashboard"],
            stderr=subprocess.DEVNULL,
        )
        workers = [
            subprocess.Popen(
                [*run, "-m", "dask", "worker", *where, "--nworkers", "1"]
                + ["--nthreads", "2", "--no-dashboard"],
                env={**env, "OTEL_SERVICE_NAME": f"worker-{i}"},
                stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        try:
            client = subprocess.run(
                [*run, str(PROGRAM), "client", str(scheduler_file), str(N)],
                env={**env, "OTEL_SERVICE_NAME": "client"},
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert client.returncode == 0, client.stderr[-3000:]
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(60) for worker in workers]
            scheduler.terminate()
            scheduler.wait(60)
        assert codes == [0, 0]
        spans = rx.wait_for_spans(
            lambda got: (
                {"client", "worker-0", "worker-1"}
                <= {
                    s["resource"].get("service.name")
                    for s in got
                    if not s["parent_span_id"]
                }
            ),
            timeout=30,
        )
        records = [
            {**r["attributes"], "span_id": r["span_id"], "trace_id": r["trace_id"]}
            for r in rx.wait_for_logs(
                lambda got: sum(r["body"] == "job" for r in got) >= N, timeout=30
            )
            if r["body"] == "job"
        ]
    check_task_tree(spans, records)
    tasks = [s for s in spans if "dask.key" in s["attributes"]]
    sessions = collections.defaultdict(set)
    for s in tasks:
        resource = s["resource"]
        sessions[resource["service.name"]].add(resource["service.instance.id"])
        assert resource["host.name"]
    assert set(sessions) == {"worker-0", "worker-1"}  # both ran tasks
    assert len(set().union(*sessions.values())) == 2  # a session each
