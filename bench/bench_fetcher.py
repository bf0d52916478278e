"""Benchmark: the fetcher's entry in process, per message shape: CPU and requests per 1,000 changes, throughput.

The changes are packed by the parser's forwarder (fanout.pipeline.fetch_queue, into a recording queue) exactly as
the deployed parser sends them, then read back as the SQS batches Lambda's event source hands the fetcher and
applied by its handler (fetcher_fn/app.py, its observability wrapper and metric flush included) on
real MySQL 8.0, OpenSearch and ministack DynamoDB. In one run and on the same rows:

- ``one a change``: one message per change, 10 messages an invocation (the shape before messages were packed);
- ``packed``: drained batches of DRAINED changes packed into messages, FETCH_BATCH messages an invocation.

Per 1,000 changes: the fetcher's CPU (the process's, every thread: the sinks are written side by side), its
invocations, SQS requests as billed (the parser's SendMessageBatch, the poller's ReceiveMessage and
DeleteMessageBatch per invocation, each 64 KB of a request's payload one request), and changes/s in process
(the figure bench_end_to_end compares the deployed stack with). With ``BENCH_PROFILE=1`` a further packed run
is profiled (cProfile, in the standard library: nothing to pin) and its
top functions written to bench/results/fetcher_profile.txt.

    .venv/bin/python -m bench.bench_fetcher      # -> bench/results/fetcher.{json,md} (and fetcher_profile.txt)
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any

import boto3
from botocore.config import Config

from bench.harness import ROOT, create_replica_table, local_services, posts_database, write_results
from fanout.capture.change_log import DEFAULT_BATCH_ROWS
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.model.payloads import fetcher_event
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.wiring import aws_config
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.eventbridge import EventBridgeSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.reader import DatabaseSource
from local.database import drop_database
from tests.support.fakes import FakeContext
from tests.support.indices import delete_index
from tests.support.mappings import in_index
from tests.support.world import fetcher_handler

ROWS = int(os.environ.get("BENCH_FETCHER_ROWS", "4000"))
DRAINED = DEFAULT_BATCH_ROWS  # the drainer's batch
FETCH_BATCH = int(os.environ.get("BENCH_FETCH_BATCH", "10"))
ROUNDS = 3
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
SQS_BILLED_BYTES = 64 * 1024


class RecordingQueue:
    """SendMessageBatch as SQS answers it, keeping the bodies in order."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.requests = 0
        self.billed = 0  # SQS bills each 64 KB of a request's payload as one request

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.requests += 1
        self.billed += billed([entry["MessageBody"] for entry in Entries])
        self.bodies += [entry["MessageBody"] for entry in Entries]
        return {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in Entries], "Failed": []}


def reject(reason: str, payload: Any, correlation_id: str) -> None:
    raise AssertionError(f"bench change rejected: {reason}")


def billed(bodies: list[str]) -> int:
    """The requests SQS bills for one request carrying ``bodies``: one per 64 KB of payload (at least one)."""
    return max(1, math.ceil(sum(len(b.encode("utf-8")) for b in bodies) / SQS_BILLED_BYTES))


def sqs_records(bodies: list[str], offset: int) -> list[dict[str, Any]]:
    return [
        {"messageId": f"m{offset + i}", "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {}}
        for i, body in enumerate(bodies)
    ]


def queued(changes: list[Change], packed: bool) -> tuple[list[str], int]:
    """The bodies the parser sends for ``changes`` (drained DRAINED at a time), and its SendMessageBatch requests.
    Unpacked: one message a change, 10 a request, as the forwarder sent them before it packed."""
    if not packed:
        bodies = [json.dumps(fetcher_event([change])) for change in changes]
        return bodies, sum(math.ceil(len(changes[i : i + DRAINED]) / 10) for i in range(0, len(changes), DRAINED))
    queue = RecordingQueue()
    forward = QueueForwarder(queue, "bench")
    for start in range(0, len(changes), DRAINED):
        forward.send(changes[start : start + DRAINED])
    assert queue.billed == queue.requests or queue.billed > queue.requests
    return queue.bodies, queue.billed


def run(fetcher: Fetcher, bodies: list[str], batch: int, sqs_sends: int, changes: int) -> dict[str, Any]:
    cpu, wall, invocations, receives = 0.0, 0.0, 0, 0
    handle = fetcher_handler(fetcher)
    for start in range(0, len(bodies), batch):
        receives += billed(bodies[start : start + batch])
        event = {"Records": sqs_records(bodies[start : start + batch], start)}
        c, w = time.process_time(), time.perf_counter()
        answer = handle(event, FakeContext(aws_request_id="bench"))
        cpu += time.process_time() - c
        wall += time.perf_counter() - w
        invocations += 1
        assert not answer["batchItemFailures"], answer
    return {
        "changes": changes,
        "messages": len(bodies),
        "invocations_per_1000": round(invocations * 1000 / changes, 1),
        # billed requests: the parser's sends, the poller's receive and delete per invocation (64 KB each)
        "sqs_requests_per_1000": round((sqs_sends + receives + invocations) * 1000 / changes, 1),
        "message_bytes_per_change": round(sum(len(b.encode("utf-8")) for b in bodies) / changes, 1),
        "ms_per_change": round(wall * 1000 / changes, 3),
        "cpu_ms_per_1000": round(cpu * 1000 * 1000 / changes, 1),
        "changes_per_s": round(changes / wall, 1),
    }


def import_times() -> dict[str, float]:
    """Cold import of each handler module in a fresh interpreter (median of 5), in ms, as Lambda's init runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "common")}
    out: dict[str, float] = {}
    for handler in ("parser_fn", "fetcher_fn"):
        code = (
            f"import sys, time; sys.path.insert(0, {str(ROOT / handler)!r}); t = time.perf_counter(); import app; "
            "print((time.perf_counter() - t) * 1000)"
        )
        runs = [
            float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout)
            for _ in range(5)
        ]
        out[handler] = round(statistics.median(runs), 1)
    return out


def aws_client(cfg: Any, service: str, **overrides: Any) -> Any:
    """A client of the local stack's ``service``, configured as fanout.pipeline.wiring configures its clients
    (``overrides``: botocore Config options changed for a comparison)."""
    return boto3.client(
        service,
        endpoint_url=cfg.aws_endpoint,
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=aws_config().merge(Config(**overrides)) if overrides else aws_config(),
    )


def sinks_for(cfg: Any, opensearch: Any, table_name: str) -> list[Any]:
    """Both sinks, built as fanout.pipeline.wiring builds them (its botocore Config included)."""
    client = aws_client(cfg, "dynamodb")
    return [OpenSearchSink(opensearch), DynamoDBSink(client, table_name, tombstone_ttl_seconds=3600)]


@contextmanager
def posts_fetcher(cfg: Any, rows: int, event_bus: str = "") -> Iterator[Fetcher]:
    """A fetcher over ``rows`` fresh posts rows, in a database, an index and a replica table of their own, all
    dropped on exit. With ``event_bus``, it publishes the change events there too, as the deployed fetcher does."""
    db_name, conn = posts_database(cfg, rows)
    _, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    posts = default_mappings().get("posts")
    assert posts is not None
    mapping = in_index(posts, db_name.replace("_", "-"))
    sinks = sinks_for(cfg, opensearch, table.name)
    if event_bus:
        sinks.append(EventBridgeSink(aws_client(cfg, "events"), event_bus))
    try:
        yield Fetcher(Mappings({"posts": mapping}), DatabaseSource.over(conn), sinks, reject=reject)
    finally:
        table.delete()
        delete_index(opensearch, mapping.opensearch.index)
        drop_database(cfg, db_name)


def packed_in_process(cfg: Any, rows: int, fetch_batch: int = FETCH_BATCH, event_bus: str = "") -> dict[str, Any]:
    """The packed shape alone on ``rows`` fresh posts rows (bench_end_to_end's in-process figure, taken in its
    run): after a warm-up on the first messages, one run of every message, ``fetch_batch`` an invocation. With
    ``event_bus``, the change events are published there too, as the deployed fetcher publishes them."""
    # the metric blobs, printed as in Lambda, go nowhere; their cost stays in
    with posts_fetcher(cfg, rows, event_bus) as fetcher, open(os.devnull, "w") as devnull, redirect_stdout(devnull):
        now_us = int(time.time() * 1_000_000)
        changes = [Change("posts", (("id", i + 1),), "update", now_us, "bench") for i in range(rows)]
        bodies, sends = queued(changes, packed=True)
        warm = min(len(bodies), fetch_batch)
        run(fetcher, bodies[:warm], fetch_batch, 0,
            sum(len(json.loads(body)["changes"]) for body in bodies[:warm]))  # fmt: skip
        return run(fetcher, bodies, fetch_batch, sends, rows)


def main() -> int:
    cfg = local_services()
    # the metric blobs, printed as in Lambda, go nowhere; their cost stays in
    with posts_fetcher(cfg, ROWS) as fetcher, open(os.devnull, "w") as devnull, redirect_stdout(devnull):
        gc.freeze()  # as the fetcher's handler does once its fetcher is built (fetcher_fn/app.py)
        results: dict[str, list[dict[str, Any]]] = {"one a change": [], "packed": []}
        profile = cProfile.Profile() if PROFILE else None
        now_us = int(time.time() * 1_000_000)
        changes = [Change("posts", (("id", i + 1),), "update", now_us, "bench") for i in range(ROWS)]
        shapes: dict[str, tuple[list[str], int, int]] = {
            "one a change": (*queued(changes, packed=False), 10),
            "packed": (*queued(changes, packed=True), FETCH_BATCH),
        }
        run(fetcher, shapes["packed"][0], FETCH_BATCH, 0, ROWS)  # warm up: index, pools
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both
            for name, (bodies, sends, batch) in shapes.items():
                results[name].append(run(fetcher, bodies, batch, sends, ROWS))
        if profile is not None:  # a round of its own: the profiler's overhead stays out of the figures
            bodies, sends, batch = shapes["packed"]
            profile.enable()
            run(fetcher, bodies, batch, sends, ROWS)
            profile.disable()
        imports = import_times()
    median = {
        name: {key: (statistics.median([r[key] for r in runs])) for key in runs[0]} for name, runs in results.items()
    }
    one, packed = median["one a change"], median["packed"]
    result = {"rows": ROWS, "drained_batch": DRAINED, "fetch_batch_size": FETCH_BATCH, "median_of": ROUNDS,
              "shapes": median, "import_ms": imports}  # fmt: skip
    if profile is not None:
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text)
        stats.sort_stats("tottime").print_stats(25)  # where the CPU goes
        stats.sort_stats("cumulative").print_stats(25)  # and under which calls
        (ROOT / "bench" / "results" / "fetcher_profile.txt").write_text(text.getvalue())

    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"| {name} | {r['messages']} | {r['invocations_per_1000']} | {r['sqs_requests_per_1000']} | "
            f"{r['cpu_ms_per_1000']} | {r['changes_per_s']} |"
        )

    markdown = (
        f"# The fetcher's entry in process, per message shape (one run, median of {ROUNDS})\n\n"
        f"{ROWS} changes; drained {DRAINED} at a time; packed messages read {FETCH_BATCH} an invocation; MySQL 8.0, "
        "OpenSearch and ministack DynamoDB (`bench/bench_fetcher.py`).\n\n"
        "| shape | messages | fetcher invocations /1k | SQS requests /1k | fetcher CPU ms /1k | changes/s |\n"
        "|---|---|---|---|---|---|\n"
        f"{row('one a change, 10 an invocation', one)}\n{row(f'packed, {FETCH_BATCH} an invocation', packed)}\n"
        f"| **packed / one a change** | | {round(packed['invocations_per_1000'] / one['invocations_per_1000'], 3)} | "
        f"{round(packed['sqs_requests_per_1000'] / one['sqs_requests_per_1000'], 3)} | "
        f"{round(packed['cpu_ms_per_1000'] / one['cpu_ms_per_1000'], 2)} | "
        f"{round(packed['changes_per_s'] / one['changes_per_s'], 2)} |\n\n"
        "| handler | cold import ms (median of 5; this virtualenv, bytecode cached: as Lambda runs the built layer, "
        "bench_cold_import) |\n|---|---|\n" + "".join(f"| {h} | {ms} |\n" for h, ms in imports.items())
    )
    write_results("fetcher", result, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
