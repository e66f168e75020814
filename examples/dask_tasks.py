"""Dask distributed under a session: each task is a span in the worker that
ran it, under the span that submitted it, with the records logged inside.

python -m pip install "mptrace[dask]"   # from a checkout: pip install ".[dask]"
python examples/dask_tasks.py

A ``LocalCluster`` of two worker processes runs four tasks submitted under
``@mptrace.traced`` ``thumbnails``; one of them raises. It writes
``dask_tasks.jsonl`` and prints, from it, each task span with its status and
the records logged inside it.
"""

import json
import logging

from distributed import Client, LocalCluster

import mptrace

log = logging.getLogger("example")


def resize(image: int) -> int:
    log.info("resizing image %d", image)
    if image == 3:
        raise ValueError(f"image {image} is corrupt")
    return image * 2


@mptrace.traced
def thumbnails(client: Client) -> list[object]:
    futures = client.map(resize, range(4))
    return [f.exception() or f.result() for f in futures]


if __name__ == "__main__":
    with mptrace.init(exporters=["jsonl:dask_tasks.jsonl"]):
        cluster = LocalCluster(n_workers=2, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            print("results:", thumbnails(client))
    with open("dask_tasks.jsonl", encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    spans = {e["span_id"]: e for e in events if e["kind"] == "span"}
    for span in sorted(spans.values(), key=lambda s: s["start_ns"]):
        if "dask.key" not in span["attributes"]:
            continue
        parent = spans[span["parent_span_id"]]
        inside = [
            e["event"]
            for e in events
            if e["kind"] == "log" and e.get("span_id") == span["span_id"]
        ]
        print(
            f"{span['name']} ({span['status']}, pid {span['pid']}, under "
            f"{parent['name']!r}, same trace: {span['trace_id'] == parent['trace_id']})"
            f": {inside}"
        )
