"""A program with logging of its own, run plain, after ``mptrace.init()``, or under ``mptrace run``.

    python own_logging.py METHOD HOW LOGFILE [JSONL]

HOW says how the program configures its logging, and whether it calls
``mptrace.init()`` itself first (``init-`` in front):

- ``basic``: ``basicConfig(filename=LOGFILE, level=DEBUG, format=...)``
- ``force``: a first ``basicConfig()`` to stderr, then the same with ``force=True``
- ``nothing``: no configuration at all; logging's last resort prints
  WARNING and above to stderr, from a thread and a future's callback too

It logs at every level, starts one child (which logs the same), logs from
a thread and from a failing done-callback, then logs again. Nothing it
writes depends on the time, a pid or an address, so two runs compare
byte for byte.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import sys
import threading

FORMAT = "%(levelname)s|%(name)s|%(processName)s|%(threadName)s|%(message)s"


def lines(tag: str) -> None:
    for name in ("app", "app.db"):
        log = logging.getLogger(name)
        log.debug("debug %s", tag)
        log.info("info %s", tag)
        log.warning("warning %s", tag)
        log.error("error %s", tag)


class Future(concurrent.futures.Future):  # type: ignore[type-arg]
    def __repr__(self) -> str:  # the logged repr holds no address
        return "<the future>"


def failing_callback(future: Future) -> None:
    raise ZeroDivisionError("callback of " + str(future.result()))


def main(method: str, how: str, logfile: str, jsonl: str | None) -> None:
    if how.startswith("init-"):
        import mptrace

        how = how.removeprefix("init-")
        mptrace.init(exporters=[f"jsonl:{jsonl}"], level="INFO")
    if how == "basic":
        logging.basicConfig(filename=logfile, level=logging.DEBUG, format=FORMAT)
    elif how == "force":
        logging.basicConfig()
        logging.basicConfig(
            filename=logfile, level=logging.DEBUG, format=FORMAT, force=True
        )
    lines("parent")
    child = multiprocessing.get_context(method).Process(
        target=lines, args=("child",), name="child"
    )
    child.start()
    child.join(60)
    thread = threading.Thread(target=lines, args=("thread",), name="worker")
    thread.start()
    thread.join(60)
    future = Future()
    future.set_result(7)
    future.add_done_callback(failing_callback)
    lines("end")


if __name__ == "__main__":
    main(*sys.argv[1:4], sys.argv[4] if len(sys.argv) > 4 else None)
