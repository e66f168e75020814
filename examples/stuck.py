"""A pipeline that hangs: two processes take two locks in opposite order.

Run it with ``mptrace run -e jsonl:run.jsonl examples/stuck.py``; while it
hangs, ``mptrace stacks`` (another terminal) prints where each process waits.
docs/debugging.md walks through it.
"""

import logging
import multiprocessing

log = logging.getLogger("pipeline")


def writer(index_lock, data_lock, has_index, may_go):
    with index_lock:
        has_index.set()
        may_go.wait()
        log.info("writing the data")
        with data_lock:
            pass


def main():
    ctx = multiprocessing.get_context("spawn")
    index_lock, data_lock = ctx.Lock(), ctx.Lock()
    has_index, may_go = ctx.Event(), ctx.Event()
    child = ctx.Process(
        target=writer, args=(index_lock, data_lock, has_index, may_go), name="writer"
    )
    child.start()
    has_index.wait()
    with data_lock:
        may_go.set()
        log.info("updating the index")
        with index_lock:
            pass
    child.join()


if __name__ == "__main__":
    main()
