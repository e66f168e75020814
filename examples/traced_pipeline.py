"""A traced multi-process pipeline, to look at in Jaeger (or as JSON lines).

Everything happens in one trace, under one top-level span, ``pipeline``::

    pipeline                                      (this process)
    ├── process ForkPoolWorker-1, -2              (the pool's workers)
    ├── Pool.map __main__.transform
    │   └── task __main__.transform  × 6          (in the pool's workers)
    │       └── transform                         (@mptrace.traced)
    │           └── score                         (@mptrace.traced, nested)
    ├── Pool.map __main__.check                   (failed: batch 3 raised)
    │   └── task __main__.check  × 6              (one of them failed)
    │       └── check                             (holds the exception)
    ├── ProcessPoolExecutor.map __main__.summarize
    │   └── task __main__.summarize  × 3          (in the executor's workers)
    │       └── summarize
    ├── process ForkProcess-3, -4                 (the executor's workers)
    └── process crasher                           (killed by SIGSEGV)

(Process names follow the start method: SpawnPoolWorker-1 under spawn, ...)
Logs from every process, through stdlib ``logging`` and structlog
(``mptrace.get_logger``), go to the chosen exporters and, when made inside a
span, also become events of that span. Run it from the repository root::

    python examples/traced_pipeline.py                    # the console
    python examples/traced_pipeline.py --exporter jsonl:run.jsonl
    python examples/traced_pipeline.py --exporter jaeger  # OTLP, localhost:4317
    python examples/traced_pipeline.py --exporter console --exporter jaeger \\
        --start-method spawn

``--exporter`` takes any exporter ``mptrace.init`` does
(``otlp:http://host:4317``, ``otlp+http``, ...) and may be given more than
once. ``--no-crash`` leaves out the child that segfaults. The crash, the
failed task and the error lines they log are on purpose: the script exits 0,
also when nothing listens on the OTLP port (the spans it could not send are
counted, and the count is printed at the end).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import time

import mptrace

BATCHES = 6
BAD_BATCH = 3

log = logging.getLogger("pipeline")


# -- work done in the pool's and the executor's workers -----------------------------
# Module level, so that they pickle by reference under every start method.


@mptrace.traced(attributes={"pipeline.stage": "transform"})
def score(values: list[int]) -> int:
    """A nested span inside a task: the sum of squares."""
    time.sleep(0.02)  # something worth a bar in the timeline
    return sum(v * v for v in values)


@mptrace.traced(record_args=True)
def transform(batch: int) -> dict[str, int]:
    """Stage 1, in a pool worker: make a batch and score it."""
    slog = mptrace.get_logger("pipeline.transform").bind(batch=batch)
    values = [(batch * 7 + i * 3) % 11 for i in range(5)]
    slog.info("transforming", n=len(values))
    result = {"batch": batch, "score": score(values)}
    slog.info("transformed", score=result["score"])
    return result


@mptrace.traced(record_args=True)
def check(record: dict[str, int]) -> int:
    """Stage 2, in a pool worker: batch 3 fails its check, on purpose."""
    logging.getLogger("pipeline.check").info("checking batch %d", record["batch"])
    time.sleep(0.01)
    if record["batch"] == BAD_BATCH:
        raise ValueError(f"batch {BAD_BATCH} failed its checksum (on purpose)")
    return record["batch"]


@mptrace.traced
def summarize(scores: list[int]) -> dict[str, int]:
    """Stage 3, in a ProcessPoolExecutor worker."""
    logging.getLogger("pipeline.summarize").info("summarizing %d scores", len(scores))
    time.sleep(0.02)
    return {"n": len(scores), "total": sum(scores), "best": max(scores)}


def crash() -> None:
    """Stage 4, in a child of its own: read address 0, a segmentation fault."""
    logging.getLogger("pipeline.crasher").warning("about to read address 0")
    ctypes.string_at(0)


# -- the parent ------------------------------------------------------------------


@mptrace.traced(name="pipeline")
def run_pipeline(method: str | None, crash_child: bool) -> None:
    ctx = mptrace.get_context(method)
    slog = mptrace.get_logger("pipeline")
    slog.info("pipeline starting", start_method=ctx.get_start_method(), batches=BATCHES)

    with mptrace.Pool(2, context=ctx) as pool:
        records = pool.map(transform, range(BATCHES))
        slog.info("stage 1 done", scores=[r["score"] for r in records])
        try:
            pool.map(check, records)
        except ValueError:
            # The task's span in the worker holds the exception and its
            # traceback; the Pool.map span is marked as failed too.
            log.exception("stage 2: a batch failed its check; carrying on without it")
        records = [r for r in records if r["batch"] != BAD_BATCH]
        pool.close()
        pool.join()

    scores = [r["score"] for r in records]
    halves = [scores[: len(scores) // 2], scores[len(scores) // 2 :], scores]
    with mptrace.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as executor:
        summaries = list(executor.map(summarize, halves))
    slog.info("stage 3 done", summary=summaries[-1])

    if crash_child:
        child = ctx.Process(target=crash, name="crasher")
        child.start()
        child.join()
        log.warning(
            "stage 4: the crasher exited with %s (on purpose)",
            child.exitcode,
            extra={"exitcode": child.exitcode},
        )
    slog.info("pipeline finished", kept=len(records))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--exporter",
        action="append",
        help="console (default), jsonl:PATH, jaeger, or any exporter mptrace.init "
        "takes; may be repeated",
    )
    parser.add_argument(
        "--start-method",
        default=None,
        choices=["fork", "spawn", "forkserver"],
        help="how children are started (default: the platform's default)",
    )
    parser.add_argument(
        "--no-crash",
        dest="crash",
        action="store_false",
        help="leave out the child that segfaults",
    )
    args = parser.parse_args()
    # "jaeger" sends traces only (Jaeger has no OTLP logs service); log
    # records made inside a span still reach it, as that span's events.
    exporters = args.exporter or ["console"]

    # The service name is OTEL_SERVICE_NAME, or else the script's: "traced_pipeline".
    with mptrace.init(exporters=exporters):
        run_pipeline(args.start_method, args.crash)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
