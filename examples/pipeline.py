"""A small multi-process pipeline, logging through stdlib logging and structlog.

Run it and watch every process's lines arrive in one place, each tagged with
the process that wrote it::

    python examples/pipeline.py
    python examples/pipeline.py --exporter jsonl:run.jsonl --start-method spawn

One stage crashes on purpose (a worker that calls ``os._exit`` right after
logging): its records still arrive, and so do everyone else's.
"""

from __future__ import annotations

import argparse
import logging
import os
import random

import mptrace

log = logging.getLogger("pipeline")


def fetch(batch: int, out) -> None:
    """Stage one: 'download' a batch, through a third-party-style stdlib logger."""
    lib = logging.getLogger("thirdparty.http")
    lib.info("GET /batches/%d", batch)
    items = [random.Random(batch * 100 + i).randint(1, 100) for i in range(5)]
    log.info("fetched batch %d", batch, extra={"items": items, "api_key": "s3cr3t"})
    out.put((batch, items))


def transform(batch: int, items: list[int]) -> None:
    """Stage two: structured logging with bound context; batch 3 crashes hard."""
    slog = mptrace.get_logger("pipeline.transform").bind(batch=batch)
    slog.info("transforming", n=len(items))
    total = sum(i * i for i in items)
    slog.info("transformed", sum_of_squares=total)
    if batch == 3:
        slog.error("batch 3 is poisoned: leaving without cleanup")
        os._exit(70)  # no atexit, no flush: nothing logged above is lost
    try:
        if total % 7 == 0:
            raise ValueError(f"sum {total} is divisible by 7")
    except ValueError:
        slog.exception("validation failed; skipping the batch")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--exporter", action="append", help="console (default) or jsonl:PATH"
    )
    parser.add_argument(
        "--start-method", default=None, choices=["fork", "spawn", "forkserver"]
    )
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()

    with mptrace.init(service_name="pipeline", exporters=args.exporter or ["console"]):
        ctx = mptrace.get_context(args.start_method)
        log.info("pipeline starting", extra={"start_method": ctx.get_start_method()})
        queue = ctx.Queue()
        fetchers = [
            ctx.Process(target=fetch, args=(b, queue), name=f"fetch-{b}")
            for b in range(args.batches)
        ]
        for p in fetchers:
            p.start()
        batches = [queue.get(timeout=60) for _ in fetchers]
        for p in fetchers:
            p.join()
        workers = [
            ctx.Process(target=transform, args=(b, items), name=f"transform-{b}")
            for b, items in sorted(batches)
        ]
        for p in workers:
            p.start()
        for p in workers:
            p.join()
        codes = {p.name: p.exitcode for p in workers}
        log.info("pipeline finished", extra={"exit_codes": codes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
