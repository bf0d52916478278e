"""fanout status: the report built from the functions' log lines and the dead-letter queue."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from fanout import observability
from fanout.model.change import Stage
from fanout_cli.commands.status import render
from fanout_cli.dead_letters.queue import QueueDepth
from fanout_cli.dead_letters.records import parse_dead_letter
from fanout_cli.replication_status import FILTER_PATTERN, log_lines, percentile, read_log_events, summarize
from tests.support.dead_letters import AWS_RECORD, RESOURCES, rejected, sqs_message
from tests.support.log_events import T0, event
from tests.support.world import World, change, row

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


# --------------------------------------------------------------------------- reading the window newest first


class CappedLogs:
    """FilterLogEvents as the local stack answers it: oldest first, times inclusive, at most 10,000 events
    an answer and no nextToken (AWS pages on with one; the reading must be right for both)."""

    class exceptions:  # noqa: N801 - boto3's spelling
        class ResourceNotFoundException(Exception):
            pass

    def __init__(self, timestamps: list[int]) -> None:
        self.events = [
            {"timestamp": t, "message": json.dumps({"message": "change accepted", "table": "posts", "n": i})}
            for i, t in enumerate(sorted(timestamps))
        ]
        self.calls = 0

    def filter_log_events(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        inside = [e for e in self.events if request["startTime"] <= e["timestamp"] <= request["endTime"]]
        return {"events": inside[: min(request.get("limit", 10_000), 10_000)]}


def test_a_busy_window_is_read_newest_first_and_says_it_was_truncated() -> None:
    # Given 25,000 log events over ten minutes (more than one local answer holds, more than the cap)
    logs = CappedLogs([T0 + i * 24 for i in range(25_000)])
    # When the window is read with a cap of 20,000 events
    window = read_log_events(logs, "/fanout/fetcher", T0, T0 + 600_000, max_events=20_000)
    # Then the newest 20,000 were read, in time order, and the window says it is complete only from there
    assert len(window.events) == 20_000
    assert window.events[-1] == logs.events[-1] and window.events[0] == logs.events[5_000]
    assert window.truncated and window.complete_from_ms == logs.events[5_000]["timestamp"]
    # and the report says so
    report = summarize(
        log_lines(window.events),
        [],
        QueueDepth(0, 0, 0),
        ["posts"],
        window_seconds=600,
        now_ms=T0 + 600_000,
        windows={"fetcher": window},
    )
    assert report["truncated"] == {"fetcher": {"complete_from": "2025-11-27T10:42:00.000Z", "events_read": 20_000}}
    assert "TRUNCATED: the fetcher's log held more than 20000 events" in render(report)


def test_a_window_under_the_cap_is_read_whole_even_where_one_answer_would_be_cut() -> None:
    # Given 15,000 events in one second (one answer of the local stack holds 10,000)
    logs = CappedLogs([T0 + (i % 1000) for i in range(15_000)])
    window = read_log_events(logs, "/fanout/parser", T0 - 3_600_000, T0 + 1000, max_events=20_000)
    assert (len(window.events), window.truncated) == (15_000, False)
    assert sorted(json.loads(e["message"])["n"] for e in window.events) == list(range(15_000))
    report = summarize(
        log_lines(window.events),
        [],
        QueueDepth(0, 0, 0),
        ["posts"],
        window_seconds=3600,
        now_ms=T0,
        windows={"parser": window},
    )
    assert report["truncated"] == {} and "TRUNCATED" not in render(report)
    assert report["tables"]["posts"]["counts"]["received"] == 15_000


# --------------------------------------------------------------------------- what the fetcher logs, as status reads it


def test_a_batch_logs_one_info_line_and_status_reads_counts_lags_and_the_last_write_from_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given ten rows, one of them already newer in the sinks
    world = World()
    for i in range(1, 11):
        world.source.set("posts", (i,), row(i, f"title {i}"), version=10)
    world.fetcher().apply([change(1)])
    world.source.set("posts", (1,), row(1, "older"), version=5)
    capsys.readouterr()
    # When the fetcher applies a batch of ten changes
    world.fetcher().apply([change(i) for i in range(1, 11)])
    # Then it wrote one log line at INFO, not one per change and sink
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [(line["level"], line["message"]) for line in written] == [("INFO", "changes applied")]
    # and status counts from it exactly what the per-change lines said
    events = [{"timestamp": T0, "message": json.dumps(line)} for line in written]
    report = summarize(log_lines(events), [], QueueDepth(0, 0, 0), ["posts"], window_seconds=60, now_ms=T0)
    posts = report["tables"]["posts"]
    assert posts["counts"] == {"received": 0, "applied": 18, "stale_skipped": 2, "failed": 0, "rejected": 0}
    assert {sink: lag["samples"] for sink, lag in posts["lag_ms"].items()} == {"dynamodb": 9, "opensearch": 9}
    assert (posts["last_applied"]["key"], posts["last_applied"]["version"]) == ("10", 10)
    assert posts["last_applied"]["sink"] in ("opensearch", "dynamodb")


def test_per_change_lines_are_debug_detail_and_not_counted_twice(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the logger at DEBUG (LOG_LEVEL=DEBUG, or an invocation POWERTOOLS_LOGGER_SAMPLE_RATE sampled)
    world = World()
    world.source.set("posts", (1,), row(1, "t"), version=10)
    previous = observability.logger.log_level
    observability.logger.setLevel(logging.DEBUG)
    try:
        world.fetcher().apply([change(1)])
    finally:
        observability.logger.setLevel(previous)
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    # Then each write has its detail line, and status still counts each write once
    assert sorted(line["message"] for line in written) == ["change applied", "change applied", "changes applied"]
    events = [{"timestamp": T0, "message": json.dumps(line)} for line in written]
    report = summarize(log_lines(events), [], QueueDepth(0, 0, 0), ["posts"], window_seconds=60, now_ms=T0)
    assert report["tables"]["posts"]["counts"]["applied"] == 2


def test_status_shows_where_the_lag_comes_from_per_stage_over_every_batch(capsys: pytest.CaptureFixture[str]) -> None:
    # Given two batches whose changes waited 10 ms and then 30 ms in the change log
    world = World()
    t = 1_764_240_000_000_000
    for i in (1, 2):
        world.source.set("posts", (i,), row(i, f"title {i}"), version=10)
    capsys.readouterr()
    for i, drained_ms in ((1, 10), (2, 30)):
        stamped = change(i).stamped(Stage.DRAINED, change(i).changed_at_us + drained_ms * 1000)
        world.fetcher().apply([stamped.stamped(Stage.HANDED, t).stamped(Stage.FETCHED, t)])
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    # When status reads the two batch lines
    events = [{"timestamp": T0, "message": json.dumps(line)} for line in written]
    report = summarize(log_lines(events), [], QueueDepth(0, 0, 0), ["posts"], window_seconds=60, now_ms=T0)
    # Then it reports each stage over both batches (nearest rank), and says so in its text
    assert report["stages_ms"]["drain"] == {"p50": 10.0, "p99": 30.0, "samples": 2}
    assert report["stages_ms"]["total"]["samples"] == 2 and "_unknown" not in report["tables"]
    assert "where the lag comes from (p50 / p99): drain 10ms / 30ms" in render(report)
