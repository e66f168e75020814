"""joblib under a session: each batch is a task span in the loky worker
that ran it, under the span current at the ``Parallel`` call.

python examples/joblib_tasks.py

It writes ``joblib_tasks.jsonl`` and prints, from it, each task span with
the records logged inside it.
"""

import json
import logging

import joblib

import mptrace

log = logging.getLogger("example")


def resize(image: int) -> int:
    log.info("resized image %d", image)
    return image * 2


@mptrace.traced
def thumbnails() -> list[int]:
    return joblib.Parallel(n_jobs=2, batch_size=2)(
        joblib.delayed(resize)(i) for i in range(6)
    )


if __name__ == "__main__":
    with mptrace.init(exporters=["console", "jsonl:joblib_tasks.jsonl"], level="INFO"):
        sizes = thumbnails()
    print("sizes:", sizes)
    with open("joblib_tasks.jsonl", encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    spans = {e["span_id"]: e for e in events if e["kind"] == "span"}
    for span in spans.values():
        if span["attributes"].get("mptrace.span") != "task":
            continue
        parent = spans[span["parent_span_id"]]["name"]
        inside = [
            e["event"]
            for e in events
            if e["kind"] == "log" and e.get("span_id") == span["span_id"]
        ]
        print(f"{span['name']} (pid {span['pid']}, under {parent!r}): {inside}")
