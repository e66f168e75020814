"""The run that docs/debugging.md reads back with the mptrace command.

Three spawned children: one returns, one raises, one leaves by
``os._exit(3)`` after logging an error; then a pool whose map fails on one
item. It writes ``run.jsonl`` beside the console::

    python examples/debug_run.py
    mptrace report run.jsonl
"""

from __future__ import annotations

import logging
import os

import mptrace

log = logging.getLogger("pipeline")


def fetch() -> None:
    log.info("fetching")


def transform() -> None:
    log.info("transforming")
    raise ValueError("bad row 17")


def upload() -> None:
    log.error("upload failed, giving up")
    os._exit(3)


def score(x: int) -> int:
    if x == 5:
        raise KeyError(x)
    return x * 10


def main() -> int:
    with mptrace.init(
        service_name="pipeline", exporters=["console", "jsonl:run.jsonl"]
    ):
        ctx = mptrace.get_context("spawn")
        children = [
            ctx.Process(target=f, name=f.__name__) for f in (fetch, transform, upload)
        ]
        for p in children:
            p.start()
        for p in children:
            p.join()
        with ctx.Pool(2) as pool:
            try:
                pool.map(score, range(8), chunksize=1)
            except KeyError:
                log.error("scoring failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
