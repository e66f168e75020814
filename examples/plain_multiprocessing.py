"""A program that knows nothing of mptrace: run it with ``mptrace run``.

mptrace run examples/plain_multiprocessing.py
"""

import logging
import multiprocessing as mp

log = logging.getLogger("example")


def square(n: int) -> int:
    log.info("squaring %d", n)
    return n * n


def fail() -> None:
    raise ValueError("this child fails on purpose")


if __name__ == "__main__":
    mp.set_start_method("spawn")
    with mp.Pool(2) as pool:
        print(pool.map(square, range(3)))
    p = mp.Process(target=fail, name="failing-child")
    p.start()
    p.join()
    print("exit code", p.exitcode)
