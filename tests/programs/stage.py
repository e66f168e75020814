"""One stage of ``stages.py``: logs, maps over a Pool, exits with its code."""

import logging
import multiprocessing
import sys

log = logging.getLogger("stage")


def work(job: tuple[str, int]) -> int:
    stage, item = job
    log.warning("stage %s worker item %d", stage, item)
    return item * item


if __name__ == "__main__":
    name, method, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log.warning("stage %s starts", name)
    with multiprocessing.get_context(method).Pool(2) as pool:
        pool.map(work, [(name, i) for i in range(4)], chunksize=1)
    log.warning("stage %s ends with %d", name, code)
    sys.exit(code)
