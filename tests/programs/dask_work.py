"""Dask work a test checks from its spans and records.

``dask_work.py local METHOD N JSONL``: a session writing JSONL, a
``LocalCluster`` of 2 worker processes started with METHOD (or, for
``threads``, 2 workers in the program's process), N tasks.
``dask_work.py client SCHEDULER_FILE N``: the same N tasks on a running
cluster, for a program run under ``mptrace run``.
``dask_work.py up METHOD COUNT JSONL``: COUNT sessions in a row, each with a
``LocalCluster`` of 2 worker processes that runs one task.
``dask_work.py crash METHOD RECORDS JSONL``: a task logs RECORDS records,
then its worker exits with code 3; tried twice.

The tasks are a quarter each through ``submit``, ``map``, delayed and a
bag, each under a span of its own (``@mptrace.traced``); each calls an
``@mptrace.traced`` function and logs one record per item. Then a graph
built under the span ``build`` is computed under ``compute_later``.
"""

from __future__ import annotations

import logging
import os
import sys

import dask
import dask.bag
from distributed import Client, LocalCluster

import mptrace

log = logging.getLogger("dask_work")


@mptrace.traced
def inner(i: int) -> int:
    return i * i


def job(i: int) -> int:
    log.info("job", extra={"i": i})
    return inner(i)


@mptrace.traced
def by_submit(client: Client, items: range) -> list[int]:
    return client.gather([client.submit(job, i, pure=False) for i in items])


@mptrace.traced
def by_map(client: Client, items: range) -> list[int]:
    return client.gather(client.map(job, items, pure=False))


@mptrace.traced
def by_delayed(items: range) -> list[int]:
    return list(dask.compute(*[dask.delayed(job, pure=False)(i) for i in items]))


@mptrace.traced
def by_bag(items: range) -> list[int]:
    return dask.bag.from_sequence(items, npartitions=4).map(job).compute()


@mptrace.traced
def build(items: range) -> list[object]:
    return [dask.delayed(job, pure=False)(i) for i in items]


@mptrace.traced
def compute_later(graph: list[object]) -> list[int]:
    return list(dask.compute(*graph))


def work(client: Client, n: int) -> None:
    q = n // 5
    results = by_submit(client, range(0, q))
    results += by_map(client, range(q, 2 * q))
    results += by_delayed(range(2 * q, 3 * q))
    results += by_bag(range(3 * q, 4 * q))
    results += compute_later(build(range(4 * q, n)))
    assert results == [i * i for i in range(n)], results
    print("done", len(results))


def local_cluster(method: str) -> LocalCluster:
    """Two workers: processes started with *method*, or ``threads`` in this one."""
    if method != "threads":
        dask.config.set({"distributed.worker.multiprocessing-method": method})
    return LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=method != "threads",
        dashboard_address=None,
    )


def crashing(records: int) -> None:
    for i in range(records):
        log.info("before the crash", extra={"i": i})
    os._exit(3)


def main() -> None:
    mode = sys.argv[1]
    if mode == "client":
        with Client(scheduler_file=sys.argv[2]) as client:
            work(client, int(sys.argv[3]))
        return
    method, jsonl = sys.argv[2], sys.argv[4]
    count = int(sys.argv[3]) if mode == "up" else 1
    for _ in range(count):
        with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
            with local_cluster(method) as cluster, Client(cluster) as client:
                if mode == "local":
                    work(client, int(sys.argv[3]))
                elif mode == "up":
                    assert client.submit(inner, 3).result() == 9
                else:
                    future = client.submit(crashing, int(sys.argv[3]), retries=1)
                    print("raised", type(future.exception()).__name__)
                    # Closing while a nanny restarts its worker fails in Dask
                    # itself ("can only join a started process"): let it end.
                    client.wait_for_workers(2, timeout=60)
    print("sessions", count)


if __name__ == "__main__":
    main()
