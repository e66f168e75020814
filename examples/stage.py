"""One stage of ``stages.py``: a plain program with a spawn Pool.

python examples/stage.py NAME EXIT_CODE
"""

import logging
import multiprocessing as mp
import sys

log = logging.getLogger("stage")


def work(item: int) -> int:
    log.info("item %d done", item)
    return item * item


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name, code = sys.argv[1], int(sys.argv[2])
    log.info("%s starts", name)
    with mp.get_context("spawn").Pool(2) as pool:
        total = sum(pool.map(work, range(2)))
    if code:
        log.error("%s failed (total %d)", name, total)
    sys.exit(code)
