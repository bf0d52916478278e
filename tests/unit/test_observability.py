"""Logs, metrics and traces (fanout.observability), in process: what the handlers print is what CloudWatch reads.

Lambda sends a function's stdout to CloudWatch Logs, and CloudWatch turns every
line that is an embedded-metric-format (EMF) object into metrics; so capturing
stdout here shows exactly the log lines and the metrics a deployed function emits.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from fanout import observability
from fanout.capture.change_log import DrainReport, hand_on
from fanout.config import ParserSettings
from fanout.model.mapping import default_mappings
from fanout.observability import (
    NAMESPACE,
    SERVICE,
    UNKNOWN_TABLE,
    ChangeMetric,
    enable_tracing,
    flush_metrics,
    log,
    metric_table,
    record,
    record_values,
    traced,
)
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink
from tests.support.fakes import (
    FakeContext,
    FakeDynamoDBTable,
    FakeLambdaClient,
    FakeOpenSearch,
    FakeSource,
    FakeSQSClient,
    RecordingReject,
    load_app,
    load_event,
)
from tests.support.files import template_resource
from tests.support.world import World, change, row

MAPPINGS = default_mappings()


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def emf_blobs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "_aws" in e]


def log_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "_aws" not in e]


def metric_values(blobs: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Every value of ``name`` in blobs whose dimension set is exactly ``service`` + ``dimensions``."""
    wanted = {"service", *dimensions}
    values: list[float] = []
    for blob in blobs:
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        if name not in {m["Name"] for m in directive["Metrics"]}:
            continue
        if wanted not in [set(d) for d in directive["Dimensions"]]:
            continue
        if any(blob.get(k) != v for k, v in dimensions.items()):
            continue
        value = blob[name]
        values.extend(value if isinstance(value, list) else [value])
    return values


@pytest.fixture(autouse=True)
def no_pending_metrics() -> Iterator[None]:
    observability.metrics.clear_metrics()
    flush_metrics()
    yield
    observability.metrics.clear_metrics()


# --------------------------------------------------------------------------- logs


def test_log_writes_one_json_line_with_the_fields_at_the_top_level(capsys: pytest.CaptureFixture[str]) -> None:
    # When
    log(logging.WARNING, "change rejected", correlation_id="req-1", field="pk.id", key="漢字|😀")

    # Then
    [entry] = lines(capsys.readouterr().out)
    assert entry["message"] == "change rejected"
    assert entry["level"] == "WARNING"
    assert entry["service"] == SERVICE
    assert (entry["correlation_id"], entry["field"], entry["key"]) == ("req-1", "pk.id", "漢字|😀")
    assert entry["location"].startswith("test_log_writes_one_json_line")  # the caller, not log() itself
    assert entry["timestamp"].endswith("+0000") or entry["timestamp"].endswith("Z")


def test_log_writes_values_json_cannot_hold_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    log(logging.INFO, "change applied", version=10**20, lag_ms=1.5, error=ValueError("boom"))

    [entry] = lines(capsys.readouterr().out)
    assert (entry["version"], entry["lag_ms"], entry["error"]) == (10**20, 1.5, "boom")


def test_each_call_is_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    log(logging.INFO, "first", n=1)
    log(logging.ERROR, "second\nwith a newline", n=2)

    assert [e["n"] for e in lines(capsys.readouterr().out)] == [1, 2]


def test_debug_lines_are_dropped_at_the_default_level(capsys: pytest.CaptureFixture[str]) -> None:
    log(logging.DEBUG, "noise")

    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- traces


def test_tracing_stays_off_outside_lambda_and_traced_steps_still_run() -> None:
    # Given the test process: no Lambda runtime, no X-Ray daemon
    assert observability.tracer is None

    # When / Then nothing is patched, and a traced block runs as plain code
    assert enable_tracing() is False
    ran = []
    with traced("sink:opensearch", table="posts"):
        ran.append(True)
    assert ran == [True]


@pytest.mark.parametrize(
    ("env", "possible"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f"}, False),  # Tracing not Active (and the local stack)
        ({"AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"}, False),  # not in Lambda
        (
            {
                "AWS_LAMBDA_FUNCTION_NAME": "f",
                "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
                "POWERTOOLS_TRACE_DISABLED": "true",
            },
            False,
        ),
    ],
)
def test_tracing_is_possible_only_in_lambda_with_a_daemon(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], possible: bool
) -> None:
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_XRAY_DAEMON_ADDRESS", "POWERTOOLS_TRACE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert observability._tracing_possible() is possible


# --------------------------------------------------------------------------- metrics


def test_each_value_is_published_for_the_stack_and_per_table_and_sink(capsys: pytest.CaptureFixture[str]) -> None:
    # Given two applies in one invocation
    record(ChangeMetric.APPLIED, "posts", "opensearch")
    record(ChangeMetric.LAG, "posts", "opensearch", value=120.5)
    record(ChangeMetric.APPLIED, "posts", "dynamodb")
    record(ChangeMetric.LAG, "posts", "dynamodb", value=80.0)

    # When the invocation ends
    flush_metrics()
    observability.metrics.flush_metrics()

    # Then the stack-level blob holds every value, and each (table, sink) blob its own
    blobs = emf_blobs(lines(capsys.readouterr().out))
    assert {b["_aws"]["CloudWatchMetrics"][0]["Namespace"] for b in blobs} == {NAMESPACE}
    assert sorted(metric_values(blobs, "ReplicationLag")) == [80.0, 120.5]
    assert metric_values(blobs, "ReplicationLag", table="posts", sink="opensearch") == [120.5]
    assert metric_values(blobs, "ReplicationLag", table="posts", sink="dynamodb") == [80.0]
    assert metric_values(blobs, "ChangesApplied") == [1.0, 1.0]
    units = {m["Name"]: m["Unit"] for b in blobs for m in b["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert (units["ReplicationLag"], units["ChangesApplied"]) == ("Milliseconds", "Count")


def test_nothing_is_left_pending_after_a_flush(capsys: pytest.CaptureFixture[str]) -> None:
    record(ChangeMetric.RECEIVED, "posts")
    flush_metrics()
    capsys.readouterr()

    flush_metrics()

    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("payload", "table"),
    [
        ({"table": "posts"}, "posts"),
        ('{"table": "posts", "pk": 1}', "posts"),
        ({"table": "secrets"}, UNKNOWN_TABLE),  # not mapped: never a new dimension value
        ({"table": ["posts"]}, UNKNOWN_TABLE),
        ("not json", UNKNOWN_TABLE),
        ("x" * 100_000, UNKNOWN_TABLE),
        (None, UNKNOWN_TABLE),
    ],
)
def test_the_table_dimension_is_a_mapped_table_or_unknown(payload: Any, table: str) -> None:
    assert metric_table(payload, MAPPINGS) == table


# --------------------------------------------------------------------------- through both handlers


class Pipeline:
    """The parser and fetcher handlers, in process, over in-memory fakes of their clients.

    The parser's drain claims rows from MySQL; here the rows it claims are given (``rows``) and handed on by the
    drainer's own step (fanout.capture.change_log.hand_on), under the real handler's instrumentation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FETCH_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/fetch")
        monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq")
        self.parser = load_app("parser_fn/app.py", "parser_app_observed")
        self.fetcher = load_app("fetcher_fn/app.py", "fetcher_app_observed")
        self.fetch_queue = FakeSQSClient()
        self.sqs = FakeSQSClient()
        self.rows: list[tuple[int, str]] = []
        settings = ParserSettings.from_env()
        parser_deps = (
            QueueForwarder(self.fetch_queue, settings.fetch_queue_url),
            QueueRejectRecorder(self.sqs, settings.dead_letter_queue_url, source="parser"),
            FakeLambdaClient(),
        )
        monkeypatch.setattr(self.parser, "_dependencies", lambda: parser_deps)
        monkeypatch.setattr(
            self.parser, "_database", lambda _role: SimpleNamespace(get=lambda: None, close=lambda: None)
        )
        monkeypatch.setattr(self.parser, "drain", self.drain)
        self.source = FakeSource()
        self.opensearch = FakeOpenSearch()
        self.table = FakeDynamoDBTable.from_template(template_resource("ReplicaTable"))

        fetcher = Fetcher(
            default_mappings(),
            self.source,
            [
                OpenSearchSink(self.opensearch),
                DynamoDBSink(self.table.meta.client, self.table.name, tombstone_ttl_seconds=3600),
            ],
            reject=RecordingReject(),
        )
        monkeypatch.setattr(self.fetcher, "_fetcher", lambda: fetcher)

    def drain(self, conn: Any, mappings: Any, queue: Any, reject: Any, *, correlation_id: str, **_: Any) -> Any:
        forwarded, rejected = hand_on(self.rows, mappings, queue, reject, correlation_id)
        return DrainReport(claimed=len(self.rows), forwarded=forwarded, rejected=rejected)

    def ring(self, payload: dict[str, Any], request_id: str) -> Any:
        """A change-log row holding ``payload``, drained by the parser rung for it."""
        self.rows = [(1, json.dumps(payload))]
        return self.parser.handler(load_event("ring.json"), FakeContext(aws_request_id=request_id))

    def run(self, payload: dict[str, Any], request_id: str) -> Any:
        """The change-log row through the parser, then its fetch-queue message through the fetcher."""
        self.ring(payload, request_id)
        [message] = self.fetch_queue.messages[-1:]
        batch = {"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": message["MessageBody"]}]}
        return self.fetcher.handler(batch, FakeContext(aws_request_id=f"{request_id}-f"))


def test_a_change_is_followed_by_one_correlation_id_and_leaves_a_lag_metric(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a row updated two seconds ago, and fresh execution environments
    from aws_lambda_powertools.metrics.provider import cold_start

    monkeypatch.setattr(cold_start, "is_cold_start", True)
    pipeline = Pipeline(monkeypatch)
    payload = {**load_event("update.json"), "ts": round(time.time() - 2.0, 6)}
    pipeline.source.set("posts", (1,), {"id": 1, "title": "t", "body": "b"}, version=100)

    # When the trigger's payload travels through both handlers
    pipeline.run(payload, "req-observed-1")

    # Then every step logged a line carrying the parser's request id
    entries = lines(capsys.readouterr().out)
    steps = [e for e in log_lines(entries) if e.get("correlation_id") == "req-observed-1"]
    assert [e["message"] for e in steps] == ["change accepted", "changes applied"]  # one INFO line per batch
    batch = steps[1]
    assert batch["correlation_ids"] == ["req-observed-1"]
    assert {sink: counts["applied"] for sink, counts in batch["tables"]["posts"].items()} == {
        "opensearch": 1,
        "dynamodb": 1,
    }
    # ...the fetcher's lines too, although its own request id differs
    fetcher_lines = [e for e in log_lines(entries) if e.get("function_request_id") == "req-observed-1-f"]
    assert fetcher_lines and {e["correlation_id"] for e in fetcher_lines} == {"req-observed-1"}
    # and the metrics: one change received, applied in each sink with its lag (~2 s), cold starts counted
    blobs = emf_blobs(entries)
    assert metric_values(blobs, "ChangesReceived", table="posts") == [1.0]
    for sink in ("opensearch", "dynamodb"):
        assert metric_values(blobs, "ChangesApplied", table="posts", sink=sink) == [1.0]
        [lag] = metric_values(blobs, "ReplicationLag", table="posts", sink=sink)
        assert 2000.0 <= lag < 60_000.0
        assert metric_values(blobs, "ChangesFailed", table="posts", sink=sink) == [0.0]
    assert metric_values(blobs, "ColdStart", function_name="fanout-test") == [1.0]  # once per environment


def test_log_lines_leave_off_what_is_the_same_on_every_line_of_a_log_group(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a change through both handlers
    pipeline = Pipeline(monkeypatch)
    pipeline.source.set("posts", (1,), {"id": 1, "title": "t", "body": "b"}, version=100)
    pipeline.run({**load_event("update.json"), "ts": round(time.time(), 6)}, "req-lean")
    # Then no line repeats the function's name, ARN or memory (the log group and REPORT lines say them),
    # and each still names its invocation
    entries = log_lines(lines(capsys.readouterr().out))
    assert entries and all(not set(e) & {"function_name", "function_arn", "function_memory_size"} for e in entries)
    assert all(e["function_request_id"] for e in entries)


def test_each_table_and_sink_has_one_blob_that_also_publishes_at_stack_level(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a change through both handlers (warm environments: no cold-start blob)
    from aws_lambda_powertools.metrics.provider import cold_start

    monkeypatch.setattr(cold_start, "is_cold_start", False)
    pipeline = Pipeline(monkeypatch)
    pipeline.source.set("posts", (1,), {"id": 1, "title": "t", "body": "b"}, version=100)
    pipeline.run({**load_event("update.json"), "ts": round(time.time(), 6)}, "req-blobs")
    # Then the parser wrote one blob (posts) and the fetcher one per sink, each with both dimension sets
    blobs = emf_blobs(lines(capsys.readouterr().out))
    assert [(b.get("table"), b.get("sink")) for b in blobs] == [
        ("posts", None),
        ("posts", "opensearch"),
        ("posts", "dynamodb"),
    ]
    for blob in blobs:
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        assert ["service"] in directive["Dimensions"]
    assert metric_values(blobs, "ChangesApplied") == [1.0, 1.0]  # stack level: what the alarms read


def test_more_than_a_blobs_worth_of_values_is_published_whole_at_both_levels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When 250 lags are recorded for one table and sink (a blob holds at most 100 values of a metric)
    for i in range(250):
        record(ChangeMetric.LAG, "posts", "opensearch", value=float(i))
    flush_metrics()
    # Then every value is published per table and sink and at stack level, none twice
    blobs = emf_blobs(lines(capsys.readouterr().out))
    assert metric_values(blobs, "ReplicationLag", table="posts", sink="opensearch") == [float(i) for i in range(250)]
    assert metric_values(blobs, "ReplicationLag") == [float(i) for i in range(250)]


def test_values_recorded_together_are_published_as_the_same_calls_one_at_a_time_would_be(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given 250 lags recorded one at a time (a blob holds at most 100 values of a metric), published
    values = [float(i) for i in range(250)]
    for value in values:
        record(ChangeMetric.LAG, "posts", "opensearch", value=value)
    flush_metrics()
    one_at_a_time = emf_blobs(lines(capsys.readouterr().out))
    # When the same values are recorded in three calls (one of them empty) across the blob boundary
    record_values(ChangeMetric.LAG, "posts", "opensearch", values[:60])
    record_values(ChangeMetric.LAG, "posts", "opensearch", [])
    record_values(ChangeMetric.LAG, "posts", "opensearch", values[60:])
    flush_metrics()
    together = emf_blobs(lines(capsys.readouterr().out))
    # Then the blobs are the same: every value once per table and sink and at stack level, in order
    assert [b["ReplicationLag"] for b in together] == [b["ReplicationLag"] for b in one_at_a_time]
    assert metric_values(together, "ReplicationLag", table="posts", sink="opensearch") == values
    assert all(len(b["ReplicationLag"]) < 100 for b in together)


def test_a_batch_publishes_one_value_per_change_and_sink_in_the_order_of_its_changes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given three rows, the second already replicated at a newer version than the fetch will read
    world = World()
    for post_id in (1, 2, 3):
        world.source.set("posts", (post_id,), row(post_id, f"t{post_id}"), version=200)
    world.apply(change(2))
    flush_metrics()
    world.source.set("posts", (2,), row(2, "older"), version=100)
    capsys.readouterr()

    # When one batch fetches all three
    world.fetcher().apply([change(1), change(2), change(3)])
    flush_metrics()

    # Then each sink counts each change once: two applied with their lags, one stale, none failed
    blobs = emf_blobs(lines(capsys.readouterr().out))
    for sink in ("opensearch", "dynamodb"):
        assert metric_values(blobs, "ChangesFailed", table="posts", sink=sink) == [0.0, 0.0, 0.0]
        assert metric_values(blobs, "ChangesApplied", table="posts", sink=sink) == [1.0, 1.0]
        assert metric_values(blobs, "ChangesStaleSkipped", table="posts", sink=sink) == [1.0]
        assert len(metric_values(blobs, "ReplicationLag", table="posts", sink=sink)) == 2
    assert metric_values(blobs, "ChangesApplied") == [1.0] * 4  # stack level: both sinks


def test_a_failing_sink_counts_as_a_failure_and_its_rate_is_the_average(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given OpenSearch unreachable
    pipeline = Pipeline(monkeypatch)
    pipeline.source.set("posts", (1,), {"id": 1, "title": "t", "body": "b"}, version=100)
    pipeline.opensearch.fail_with = OpenSearchConnectionError("N/A", "Connection refused", OSError("refused"))

    # When the change goes through (the fetcher names its record, so the queue retries it)
    answer = pipeline.run({**load_event("update.json"), "ts": time.time()}, "req-observed-2")
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m-1"}]

    # Then the metrics were still published, with the failure and the other sink's success
    entries = lines(capsys.readouterr().out)
    blobs = emf_blobs(entries)
    assert metric_values(blobs, "ChangesFailed", table="posts", sink="opensearch") == [1.0]
    assert metric_values(blobs, "ChangesFailed", table="posts", sink="dynamodb") == [0.0]
    stack_level = metric_values(blobs, "ChangesFailed")
    assert sum(stack_level) / len(stack_level) == 0.5  # what the error-rate alarm reads (Average)
    assert metric_values(blobs, "ReplicationLag", table="posts", sink="opensearch") == []
    [failure] = [e for e in log_lines(entries) if e["message"] == "sink write failed"]
    assert (failure["correlation_id"], failure["sink"], failure["level"]) == ("req-observed-2", "opensearch", "ERROR")


def test_a_rejected_payload_is_counted_for_its_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = Pipeline(monkeypatch)

    pipeline.ring(load_event("malformed.json"), "req-observed-3")

    entries = lines(capsys.readouterr().out)
    assert metric_values(emf_blobs(entries), "ChangesRejected", table="posts") == [1.0]
    [rejected] = [e for e in log_lines(entries) if e["message"] == "change log row rejected"]
    assert (rejected["correlation_id"], rejected["table"], rejected["field"]) == ("req-observed-3", "posts", "pk.id")
    assert pipeline.fetch_queue.messages == []


def test_where_tracing_is_off_the_x_ray_sdk_is_not_even_imported() -> None:
    # A Tracer imports the X-Ray SDK when it is built: about half of a handler's cold import (bench/bench_fetcher.py)
    code = "import sys, fanout.observability; print(sorted(m for m in sys.modules if m.startswith('aws_xray_sdk')))"
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_XRAY_DAEMON_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_where_tracing_is_on_the_tracer_is_built_without_asyncio_and_still_patches() -> None:
    # Given the environment Lambda gives a function with Tracing: Active (the template's setting)
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": tempfile.gettempdir(),
        "AWS_LAMBDA_FUNCTION_NAME": "fanout-parser",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    # When a function imports its observability (the Tracer and the X-Ray SDK built at cold start), then its first
    # invocation patches the libraries it traces
    code = (
        "import json, sys, fanout.observability as o; "
        "loaded = ['asyncio' in sys.modules, 'importlib.metadata' in sys.modules]; "
        "import pymysql; patched = o.enable_tracing(); "
        "print(json.dumps([o.tracer is not None, *loaded, patched, hasattr(pymysql.connect, '__wrapped__')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    # Then the SDK's wrapt brought neither asyncio nor importlib.metadata with it (wrapt 2 did: a quarter of the
    # parser's cold import, layers/common/requirements.txt), and the wrapt pinned still patches (pymysql wrapped)
    assert json.loads(out) == [True, False, False, True, True]
