"""The tracebacks a program prints, each after a line ``== <case>``.

argv: start method, then ``on`` (under ``mptrace.init()``, with traced IPC)
or ``off`` (the plain program). Each case raises in a replaced method, a
pool task, an ``@traced`` call, or is interrupted (an alarm raises
``KeyboardInterrupt``) while it blocks in one; the program catches and
prints the traceback.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import tempfile
import traceback

import mptrace


def bad(x: object = None) -> None:
    raise ValueError("bad")  # the task's own error


def wait_forever(event: object) -> None:
    event.wait()  # type: ignore[attr-defined]


@mptrace.traced
def traced_bad() -> None:
    bad()


def interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def soon() -> None:
    """A KeyboardInterrupt in a moment, once the case blocks."""
    signal.setitimer(signal.ITIMER_REAL, 0.3)


def cases(ctx: multiprocessing.context.BaseContext) -> dict[str, object]:
    def lock() -> None:
        held = ctx.Lock()
        held.acquire()
        soon()
        with held:  # never: this process holds it
            pass

    def event() -> None:
        never = ctx.Event()
        soon()
        never.wait()

    def join() -> None:
        never = ctx.Event()
        p = ctx.Process(target=wait_forever, args=(never,), daemon=True)
        p.start()
        try:
            soon()
            p.join()
        finally:
            p.terminate()
            p.join()

    def full_queue() -> None:
        q = ctx.Queue(1)
        q.put(1)
        soon()
        q.put(2)  # the queue is full

    def pool_map() -> None:
        with ctx.Pool(1) as pool:
            pool.map(bad, [1])

    def pool_imap() -> None:
        with ctx.Pool(1) as pool:
            list(pool.imap(bad, [1]))

    def executor() -> None:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            ex.submit(bad, 1).result()

    def unpicklable() -> None:
        p = ctx.Process(target=lambda: None)
        p.start()  # spawn, forkserver: the lambda does not pickle
        p.join()

    return {
        "lock": lock,
        "event": event,
        "join": join,
        "full queue": full_queue,
        "traced": traced_bad,
        "pool map": pool_map,
        "pool imap": pool_imap,
        "executor": executor,
        "unpicklable": unpicklable,
    }


def main() -> None:
    method, mode = sys.argv[1:3]
    signal.signal(signal.SIGALRM, interrupt)
    ctx = multiprocessing.get_context(method)
    if mode == "on":
        os.environ["MPTRACE_TRACE_IPC"] = "1"
        folder = tempfile.mkdtemp()
        mptrace.init(exporters=[f"jsonl:{os.path.join(folder, 'run.jsonl')}"])
    for name, case in cases(ctx).items():
        print(f"== {name}", flush=True)
        try:
            case()  # type: ignore[operator]
        except BaseException:
            traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
