"""Benchmark: the fetcher's CPU per 1,000 changes by invocation size, with and without the change events, in process.

Issue 26 asks for at most 150 ms of fetcher CPU per 1,000 changes. bench_fetcher measures the bulk shape (a few
invocations of thousands of changes) without the event bus; the deployed fetcher at a steady 1,000 changes a second
takes a few dozen changes an invocation and, for ``posts``, publishes an event a change. This runs both shapes with
and without the event sink, interleaved on the same rows, through the fetcher's handler (fetcher_fn/app.py, its
observability wrapper and metric flush included) on real MySQL 8.0, OpenSearch and ministack:

- ``steady``: STEADY_CHANGES an invocation, what an invocation carried at 1,000 changes a second on the deployed
  stack (bench/results/steady.md: 28.4 invocations per 1,000 changes);
- ``batches of 100``: BASELINE_CHANGES an invocation, the shape of the figure issue 26 started from (563 ms per
  1,000 changes, in process, queued batches of 100, no event bus; bench_throughput, since retired);
- ``bulk``: BULK_CHANGES an invocation, a drained batch in one packed message.

It also times what botocore spends on one ``PutEvents`` request of EventBridge's largest (10 entries) against
ministack's event bus, with and without botocore's parameter validation: the event sink's floor, since
EventBridge takes at most 10 entries a request (100 requests per 1,000 changes).

    .venv/bin/python -m bench.bench_fetcher_events   # -> bench/results/fetcher_events.{json,md}; runs `up` if not up
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import statistics
import time

from bench.bench_fetcher import RecordingQueue, aws_client, posts_fetcher, run
from bench.harness import deployed_stack, write_results
from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.sinks.eventbridge import MAX_ENTRIES, event_entry
from fanout.source.rows import RowState
from local.config import LocalConfig, StackEnv

ROWS = int(os.environ.get("BENCH_ROWS", "4000"))
STEADY_CHANGES = 35
BASELINE_CHANGES = 100
BULK_CHANGES = 500
ROUNDS = 3
REQUESTS = 200  # PutEvents requests timed per arm


def packed(changes: list[Change], per_invocation: int) -> list[str]:
    """The message bodies the parser's forwarder sends for ``changes`` drained ``per_invocation`` at a time: one
    message each (a drained batch this small fits one), so one invocation each."""
    queue = RecordingQueue()
    forward = QueueForwarder(queue, "bench")
    for start in range(0, len(changes), per_invocation):
        forward.send(changes[start : start + per_invocation])
    assert len(queue.bodies) == -(-len(changes) // per_invocation), "a drained batch took more than one message"
    return queue.bodies


def put_events_cpu(cfg: LocalConfig, bus: str) -> dict[bool, float]:
    """botocore's CPU per PutEvents request of MAX_ENTRIES ``posts`` events (ms, median of ROUNDS rounds of REQUESTS,
    the two arms interleaved), ministack answering, on clients configured as the fetcher's
    (fanout.pipeline.wiring.aws_config) with botocore's parameter validation on (True) and off (False)."""
    clients = {validate: aws_client(cfg, "events", parameter_validation=validate) for validate in (True, False)}
    posts = default_mappings().get("posts")
    assert posts is not None
    row = {"id": 1, "title": "a post", "body": "body " * 40, "author": "bench", "updated_at": dt.datetime(2026, 1, 1)}
    entries = [
        event_entry(bus, posts, Change("posts", (("id", i),), "update", 1, "bench"), RowState(dict(row, id=i), i))
        for i in range(MAX_ENTRIES)
    ]
    for client in clients.values():
        client.put_events(Entries=entries)  # connection, endpoint resolution
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(ROUNDS):
        for validate, client in clients.items():
            started = time.process_time()
            for _ in range(REQUESTS):
                client.put_events(Entries=entries)
            times[validate].append((time.process_time() - started) * 1000 / REQUESTS)
    return {validate: statistics.median(values) for validate, values in times.items()}


def main() -> int:
    cfg = LocalConfig.from_env()
    env = StackEnv.read() or deployed_stack()  # its event bus
    now_us = int(time.time() * 1_000_000)
    changes = [Change("posts", (("id", i + 1),), "update", now_us, "bench") for i in range(ROWS)]
    sizes = {"steady": STEADY_CHANGES, "batches of 100": BASELINE_CHANGES, "bulk": BULK_CHANGES}
    shapes = {shape: packed(changes, size) for shape, size in sizes.items()}
    cpu: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as stack:
        fetchers = {
            "without events": stack.enter_context(posts_fetcher(cfg, ROWS)),
            "with events": stack.enter_context(posts_fetcher(cfg, ROWS, env.event_bus_name)),
        }
        gc.freeze()  # as the fetcher's handler does once its fetcher is built (fetcher_fn/app.py)
        # the metric blobs, printed as in Lambda, go nowhere; their cost stays in
        stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        for fetcher in fetchers.values():  # warm up: index, pools, the bus's connection
            run(fetcher, shapes["bulk"][:1], 1, 0, BULK_CHANGES)
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits every arm alike
            for shape, bodies in shapes.items():
                for events, fetcher in fetchers.items():
                    result = run(fetcher, bodies, 1, 0, ROWS)
                    cpu.setdefault((shape, events), []).append(result["cpu_ms_per_1000"])
    per_request = put_events_cpu(cfg, env.event_bus_name)
    median = {key: round(statistics.median(values), 1) for key, values in cpu.items()}
    result = {
        "rows": ROWS,
        "changes_per_invocation": sizes,
        "rounds": ROUNDS,
        "fetcher_cpu_ms_per_1000": {f"{shape}, {events}": value for (shape, events), value in median.items()},
        "put_events_cpu_ms_per_request": {
            "validated": round(per_request[True], 3),
            "not validated": round(per_request[False], 3),
        },
    }
    rows = "".join(
        f"| {shape} ({sizes[shape]} changes an invocation) | "
        f"{median[(shape, 'without events')]} | {median[(shape, 'with events')]} | "
        f"{round(median[(shape, 'with events')] - median[(shape, 'without events')], 1)} |\n"
        for shape in shapes
    )
    markdown = (
        f"# The fetcher's CPU by invocation size, with and without the change events (one run, median of {ROUNDS})\n\n"
        f"{ROWS} changes of `posts` through the fetcher's handler in process, every arm interleaved; MySQL 8.0, "
        "OpenSearch, ministack's DynamoDB and event bus (`.venv/bin/python -m bench.bench_fetcher_events`).\n\n"
        "| shape | fetcher CPU ms /1k, without events | with events | what the events add |\n|---|---|---|---|\n"
        f"{rows}\n"
        f"botocore's CPU per `PutEvents` request of {MAX_ENTRIES} entries (the most EventBridge takes), ministack "
        f"answering, median of {ROUNDS} interleaved rounds of {REQUESTS} requests: {per_request[True]:.3f} ms with "
        f"botocore's parameter validation, {per_request[False]:.3f} ms without. At {MAX_ENTRIES} entries a request "
        f"that is {per_request[True] * 1000 / MAX_ENTRIES:.0f} ms per 1,000 events before the sink builds any.\n"
    )
    write_results("fetcher_events", result, markdown)
    print(markdown)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
