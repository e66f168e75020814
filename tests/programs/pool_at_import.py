"""A library module that starts its own Pool when it is imported.

Its task is a builtin: a function of a module still being imported cannot
reach a worker, with mptrace or without.
"""

import multiprocessing as mp

with mp.Pool(2) as _pool:
    RESULT = _pool.map(abs, range(-3, 0))
