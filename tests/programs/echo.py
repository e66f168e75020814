"""Run with ``-m echo METHOD CODE``: what a program run by mptrace sees.

Prints its argv and __name__, the TRACEPARENT a subprocess sees (from the
program and from a child started with METHOD, which re-imports this module),
and the result of a Pool a module started at import; exits with CODE.
"""

import json
import multiprocessing as mp
import subprocess
import sys

SHOW = "import os; print(os.environ.get('TRACEPARENT'))"


def traceparent_of_a_subprocess():
    cmd = [sys.executable, "-c", SHOW]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def child(q):
    q.put(traceparent_of_a_subprocess())


def main():
    import pool_at_import  # only in the program: its Pool starts as it is imported

    ctx = mp.get_context(sys.argv[1])
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,), name="env-child")
    p.start()
    child_tp = q.get(timeout=60)
    p.join(60)
    out = {
        "argv": sys.argv,
        "name": __name__,
        "main_tp": traceparent_of_a_subprocess(),
        "child_tp": child_tp,
        "child_code": p.exitcode,
        "import_pool": pool_at_import.RESULT,
    }
    print(json.dumps(out), flush=True)
    sys.exit(int(sys.argv[2]))


if __name__ == "__main__":
    main()
