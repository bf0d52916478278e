"""Benchmark: change events published beside the other sinks, and what publishing them costs the fetcher.

In one process run and on the same rows, interleaved round by round, the fetch path
(fanout.pipeline.fetcher.Fetcher: locking re-read, version-gated writes) applies the same changes
  (a) to OpenSearch and DynamoDB, and
  (b) to OpenSearch, DynamoDB and the EventBridge bus (fanout.sinks.eventbridge, PutEvents in requests of 10),
on the local services (MySQL 8.0, OpenSearch, ministack's DynamoDB and EventBridge, a bus of its own with a rule
to an SQS queue, as a consumer would subscribe). It reports the events per second (b) publishes and (b)/(a):
what the third sink costs per change. Absolute numbers depend on this shared 2-core machine; the ratio is the
result. Every published event is counted back off the consumer queue, so nothing is assumed delivered.

    .venv/bin/python -m bench.bench_events     # writes bench/results/events.{json,md}
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from dataclasses import replace

import boto3

from bench.harness import RESULTS, create_replica_table, local_services, posts_database
from fanout.model.change import Change
from fanout.model.mapping import EventBridgeSection, Mappings, default_mappings
from fanout.observability import metrics_unpublished
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.eventbridge import EventBridgeSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.reader import DatabaseSource
from local.database import drop_database
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index

ROWS = 300
ROUNDS = 3


def main() -> int:
    cfg = local_services()
    db_name, conn = posts_database(cfg, ROWS)
    aws = {
        "endpoint_url": cfg.aws_endpoint,
        "region_name": cfg.region,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    events, sqs = boto3.client("events", **aws), boto3.client("sqs", **aws)
    name = f"bench-events-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps({"source": ["fanout"]}), State="ENABLED")
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "consumer", "Arn": queue_arn}])
    _, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    posts = default_mappings().get("posts")
    assert posts is not None
    mapping = replace(
        posts,
        opensearch=replace(posts.opensearch, index=db_name.replace("_", "-")),
        eventbridge=EventBridgeSection(enabled=True),
    )
    mappings = Mappings({"posts": mapping})
    changes = [Change("posts", (("id", i + 1),), "update", int(time.time() * 1_000_000)) for i in range(ROWS)]
    source = DatabaseSource.over(conn)
    both = [OpenSearchSink(opensearch), dynamodb_sink(table, tombstone_ttl_seconds=3600)]
    paths = {
        "opensearch + dynamodb": Fetcher(mappings, source, both),
        "opensearch + dynamodb + events": Fetcher(mappings, source, [*both, EventBridgeSink(events, name)]),
    }
    timings: dict[str, list[float]] = {path: [] for path in paths}
    delivered = 0
    try:
        for fetcher in paths.values():  # warm both (index creation, connection pools)
            fetcher.apply(changes)
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both
            for path, fetcher in paths.items():
                started = time.perf_counter()
                fetcher.apply(changes)
                timings[path].append(time.perf_counter() - started)
        while True:  # count what the consumer received: warm-up and every timed round
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            delivered += len(messages)
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
    finally:
        events.remove_targets(Rule=name, EventBusName=name, Ids=["consumer"])
        events.delete_rule(Name=name, EventBusName=name)
        events.delete_event_bus(Name=name)
        sqs.delete_queue(QueueUrl=queue_url)
        table.delete()
        delete_index(opensearch, mapping.opensearch.index)
        drop_database(cfg, db_name)
    medians = {path: statistics.median(values) for path, values in timings.items()}
    with_events, without = medians["opensearch + dynamodb + events"], medians["opensearch + dynamodb"]
    result = {
        "rows": ROWS,
        "rounds": ROUNDS,
        "seconds_per_round": timings,
        "changes_per_s": {path: round(ROWS / seconds, 1) for path, seconds in medians.items()},
        "events_per_s": round(ROWS / with_events, 1),
        "events_delivered_to_consumer": delivered,
        "events_expected": ROWS * (ROUNDS + 1),
        "with_events_over_without": round(with_events / without, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "events.json").write_text(json.dumps(result, indent=2) + "\n")
    table_md = "\n".join(
        ["| fetch path | changes / s (median of rounds) |", "|---|---|"]
        + [f"| {path} | {rate} |" for path, rate in result["changes_per_s"].items()]
        + [
            f"| **events published / s** | **{result['events_per_s']}** |",
            f"| **time per change, with events / without** | **{result['with_events_over_without']:.2f}×** |",
            f"| events received by the consumer / published | {delivered} / {result['events_expected']} |",
        ]
    )
    (RESULTS / "events.md").write_text(
        f"# Change events beside the other sinks ({ROWS} rows × {ROUNDS} rounds, one run)\n\n"
        "`.venv/bin/python -m bench.bench_events` (local services: MySQL 8.0, OpenSearch, ministack)\n\n"
        f"{table_md}\n"
    )
    print(table_md)
    return 0


if __name__ == "__main__":
    with metrics_unpublished():  # off Lambda nothing reads the EMF blobs; they only filled the output
        sys.exit(main())
