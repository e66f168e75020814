"""Children for test_guest: importable by name under spawn and forkserver."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from typing import Any


def wait_for(event: Any) -> None:
    event.wait(120)


def say(conn: Any, what: str) -> None:
    conn.send(what)
    conn.close()


def threads_here(conn: Any) -> None:
    conn.send([t.name for t in threading.enumerate()])
    conn.close()


def keyword_self(*, self: int) -> int:
    return self


def square(x: int) -> int:
    return x * x


def start_from_thread(ctx: Any, target: Any) -> None:
    """Run *target(ctx)* in a thread of the program's own, and wait for it."""
    thread = threading.Thread(target=target, args=(ctx,))
    thread.start()
    thread.join(120)


def one_process_and_pool(ctx: Any) -> None:
    p = ctx.Process(target=square, args=(2,), name="from-thread")
    p.start()
    p.join(60)
    with ctx.Pool(1) as pool:
        pool.apply(square, (3,))


def asyncio_process(ctx: Any) -> None:
    async def main() -> None:
        def run() -> None:
            p = ctx.Process(target=square, args=(2,), name="from-asyncio")
            p.start()
            p.join(60)

        await asyncio.get_running_loop().run_in_executor(None, run)
        p = ctx.Process(target=square, args=(2,), name="from-task")
        p.start()
        p.join(60)

    asyncio.run(main())


def stdlib_grandchild(method: str) -> None:
    """Start a child with the stdlib's own context (a drop-in's child does)."""
    import logging

    logging.getLogger("guest").warning("the child")
    p = multiprocessing.get_context(method).Process(
        target=say_warning, args=("the grandchild",), name="grandchild"
    )
    p.start()
    p.join(60)
    assert p.exitcode == 0


def say_warning(what: str) -> None:
    import logging

    logging.getLogger("guest").warning(what)
