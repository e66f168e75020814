"""init() without ``with``, then a Manager left running: the program must still exit."""

import multiprocessing as mp
import sys

import mptrace

if __name__ == "__main__":
    mptrace.init()
    manager = mp.get_context(sys.argv[1]).Manager()
    shared = manager.dict()
    shared["x"] = 1
    print(shared["x"], flush=True)
