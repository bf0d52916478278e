"""fanout status: the report built from the functions' log lines and the dead-letter queue."""

from __future__ import annotations

import json
from typing import Any

from test_dead_letters import AWS_RECORD, RESOURCES, rejected, sqs_message

from fanout.dead_letters import QueueDepth, parse_dead_letter
from fanout.replication_status import FILTER_PATTERN, log_lines, percentile, summarize

T0 = 1764240000000


def event(offset_ms: int, **fields: Any) -> dict[str, Any]:
    return {"timestamp": T0 + offset_ms, "message": json.dumps({"level": "INFO", **fields})}


EVENTS = [
    {"timestamp": T0, "message": "START RequestId: 1 Version: $LATEST"},
    event(0, message="change accepted", table="posts", correlation_id="c1"),
    event(
        10,
        message="change applied",
        table="posts",
        sink="opensearch",
        key="1",
        version=5,
        lag_ms=100.0,
        correlation_id="c1",
        outcome="written",
    ),
    event(
        20,
        message="change applied",
        table="posts",
        sink="dynamodb",
        key="1",
        version=5,
        lag_ms=300.0,
        correlation_id="c1",
        outcome="written",
    ),
    event(30, message="change accepted", table="posts", correlation_id="c2"),
    event(40, message="sink write failed", table="posts", sink="opensearch", correlation_id="c2"),
    event(
        50,
        message="change applied",
        table="posts",
        sink="dynamodb",
        key="2",
        version=7,
        lag_ms=200.0,
        correlation_id="c2",
        outcome="written",
    ),
    event(60, message="stale change skipped", table="posts", sink="dynamodb", key="1", lag_ms=900.0),
    event(70, message="change rejected", table="_unknown", reason="table: not mapped"),
    {"timestamp": T0 + 80, "message": json.dumps({"_aws": {}, "ReplicationLag": [1.0]})},  # EMF, not a log line
    event(90, message="something else", table="posts"),
]


def test_the_report_counts_per_table_and_takes_lag_from_applied_writes_only() -> None:
    letters = [
        parse_dead_letter(sqs_message(json.dumps(AWS_RECORD), "m-1"), RESOURCES),
        rejected("parser", "not json at all", message_id="m-2"),
    ]

    report = summarize(log_lines(EVENTS), letters, QueueDepth(2, 0, 0), ["posts"], window_seconds=600, now_ms=T0 + 1000)

    posts = report["tables"]["posts"]
    assert posts["counts"] == {"received": 2, "applied": 3, "stale_skipped": 1, "failed": 1, "rejected": 0}
    assert posts["last_applied"]["key"] == "2" and posts["last_applied"]["sink"] == "dynamodb"
    assert posts["lag_ms"]["dynamodb"] == {"last": 200.0, "p50": 200.0, "p99": 300.0, "max": 300.0, "samples": 2}
    assert posts["lag_ms"]["opensearch"]["last"] == 100.0
    assert posts["dead_letters"] == 1
    assert report["tables"]["_unknown"]["counts"]["rejected"] == 1
    assert report["tables"]["_unknown"]["dead_letters"] == 1  # a payload naming no table
    assert report["dead_letter_queue"] == {"depth": 2, "visible": 2, "in_flight": 0, "delayed": 0, "read": 2}


def test_a_mapped_table_without_traffic_is_reported_empty() -> None:
    report = summarize([], [], QueueDepth(0, 0, 0), ["posts"], window_seconds=60, now_ms=T0)

    assert report["tables"]["posts"]["last_applied"] is None
    assert report["tables"]["posts"]["lag_ms"] == {}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0


def test_the_filter_pattern_names_every_message_counted() -> None:
    for message in ("change applied", "stale change skipped", "sink write failed", "read failed", "change accepted"):
        assert f'$.message = "{message}"' in FILTER_PATTERN
