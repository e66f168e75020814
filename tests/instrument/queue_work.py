"""Producers and consumers of the traced-queue tests: importable under spawn."""

from __future__ import annotations

import mptrace

N = 5


@mptrace.traced
def produce(send) -> None:
    """Put N items and the end, all inside this span."""
    for i in range(N):
        send({"i": i, "payload": b"x" * (i * 1000)})
    send(None)


@mptrace.traced
def handle(item) -> None:
    assert type(item) is dict and item["payload"] == b"x" * (item["i"] * 1000)


def queue_producer(q) -> None:
    produce(q.put)


def queue_consumer(q) -> None:
    while (item := q.get()) is not None:  # read outside any span of its own
        handle(item)


def pipe_producer(conn) -> None:
    produce(conn.send)


def pipe_consumer(conn) -> None:
    while (item := conn.recv()) is not None:
        handle(item)


@mptrace.traced
def consume_all(q) -> int:
    """Read every item inside this one span: one link to the producer's."""
    count = 0
    while q.get() is not None:
        count += 1
    return count


def batch_consumer(q) -> None:
    assert consume_all(q) == N
