"""Traced queues and pipes: a consumer's span links to the producer's span.

On with ``MPTRACE_TRACE_IPC=1`` (off by default, for its cost).

A producer process puts items inside an ``@traced`` span; a consumer process
reads each outside any span of its own and handles it in an ``@traced``
call: that span has a link to the producer's span, and the item is what
was put. Under fork, spawn and forkserver.
"""

from __future__ import annotations

import multiprocessing
import pickle

import pytest
from conftest import read_jsonl
from queue_work import (
    N,
    batch_consumer,
    pipe_consumer,
    pipe_producer,
    queue_consumer,
    queue_producer,
)

import mptrace
from mptrace._instrument import ipc
from mptrace.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def _traced_ipc(monkeypatch):
    monkeypatch.setenv("MPTRACE_TRACE_IPC", "1")


def _both(ctx, producer, consumer, end, other_end=None):
    """A producer process and a consumer process on *end* (and *other_end*,
    a pipe's): both exit 0 (the consumer checks each item is as put)."""
    procs = [
        ctx.Process(target=producer, args=(end,)),
        ctx.Process(target=consumer, args=(end if other_end is None else other_end,)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]


def _links(jsonl):
    spans = [e for e in read_jsonl(jsonl) if e["kind"] == "span"]
    (produced,) = [s for s in spans if s["name"].endswith("produce")]
    handled = [s for s in spans if s["name"].endswith("handle")]
    return produced, handled


@pytest.mark.parametrize(
    "how",
    [
        ("Queue", queue_producer, queue_consumer),
        ("JoinableQueue", queue_producer, queue_consumer),
        ("SimpleQueue", queue_producer, queue_consumer),
        ("Pipe", pipe_producer, pipe_consumer),
    ],
    ids=lambda how: how[0],
)
def test_the_consumers_spans_link_to_the_producers(start_method, jsonl, how):
    kind, producer, consumer = how
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        ctx = multiprocessing.get_context(start_method)  # the stdlib's own
        if kind == "Pipe":
            reader, writer = ctx.Pipe(duplex=False)
            ends = (writer, reader)
        else:
            q = getattr(ctx, kind)()
            ends = (q, q)
        _both(ctx, producer, consumer, *ends)  # the items were as put
    produced, handled = _links(jsonl)
    assert len(handled) == N
    how_it_came = "pipe" if kind == "Pipe" else "queue"
    for span in handled:
        assert [(link["span_id"], link["attributes"]) for link in span["links"]
                if link["attributes"].get("mptrace.link") != "worker process"] == [
            (produced["span_id"], {"mptrace.link": how_it_came})
        ]  # fmt: skip


class Odd:
    """An item with a reduce of its own."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self):
        return (Odd, (self.n,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Odd) and other.n == self.n


def _put(obj):
    """What a queue's put does first (``_carry`` looks two frames up)."""
    return ipc._carry(obj, "queue")


@mptrace.traced
def _carried(obj):
    return _put(obj)


def test_an_item_comes_out_as_it_went_in(jsonl):
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        for obj in (None, Odd(3), b"y" * 100_000, {"k": [1, 2]}, 7):
            wrapped = _carried(obj)
            assert type(wrapped) is ipc.Carried  # inside a span: carried
            assert pickle.loads(pickle.dumps(wrapped)) == obj
            # Outside any span of the work (the run's span is current): as is.
            assert _put(obj) is obj


def test_off_by_default_nothing_is_replaced(monkeypatch, jsonl):
    """Without MPTRACE_TRACE_IPC the queues and pipes are the stdlib's own."""
    import multiprocessing.connection
    import multiprocessing.queues

    monkeypatch.delenv("MPTRACE_TRACE_IPC")
    plain = (multiprocessing.queues.Queue.put, multiprocessing.queues.SimpleQueue.put)
    send = multiprocessing.connection._ConnectionBase.send
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        now = (multiprocessing.queues.Queue.put, multiprocessing.queues.SimpleQueue.put)
        assert now == plain
        assert multiprocessing.connection._ConnectionBase.send is send


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("MPTRACE_TRACE_IPC", "maybe")
    with pytest.raises(ConfigurationError, match="MPTRACE_TRACE_IPC"):
        mptrace.init(exporters=["memory"])


def _noop() -> None:
    pass


def test_a_forkserver_started_before_the_switch_still_carries(monkeypatch, jsonl):
    """The switch travels with each child's config: a forkserver started
    without the variable (its children get its environment) still carries."""
    monkeypatch.delenv("MPTRACE_TRACE_IPC")
    ctx = multiprocessing.get_context("forkserver")
    p = ctx.Process(target=_noop)
    p.start()  # the server starts now, without the variable
    p.join(60)
    monkeypatch.setenv("MPTRACE_TRACE_IPC", "1")
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        _both(ctx, queue_producer, queue_consumer, ctx.SimpleQueue())
    produced, handled = _links(jsonl)
    assert len(handled) == N
    assert all(produced["span_id"] in [link["span_id"] for link in span["links"]]
               for span in handled)  # fmt: skip


def test_a_span_that_reads_many_items_of_one_span_links_to_it_once(start_method, jsonl):
    with mptrace.init(exporters=[f"jsonl:{jsonl}"]):
        ctx = multiprocessing.get_context(start_method)
        _both(ctx, queue_producer, batch_consumer, ctx.Queue())
    spans = [e for e in read_jsonl(jsonl) if e["kind"] == "span"]
    (produced,) = [s for s in spans if s["name"].endswith("produce")]
    (batch,) = [s for s in spans if s["name"].endswith("consume_all")]
    assert [(link["span_id"], link["attributes"]) for link in batch["links"]] == [
        (produced["span_id"], {"mptrace.link": "queue"})
    ]
