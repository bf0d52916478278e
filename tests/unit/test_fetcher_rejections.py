"""Rows a sink can never take are recorded (DLQ) and not retried; the other sink is still written.

Everything else a sink answers (throttling, outages) stays a failure, so Lambda retries it.
The sinks are the real ones over the in-memory fakes, which raise the real client exceptions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opensearchpy.exceptions import RequestError, TransportError

from fanout.config import ConfigError, SinkSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, parse_mappings
from fanout.pipeline.fetch_queue import parse_fetcher_event
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink
from tests.support.fakes import (
    FakeDynamoDBClient,
    FakeDynamoDBTable,
    FakeOpenSearch,
    FakeSource,
    RecordingReject,
    client_error,
)
from tests.support.files import template_resource

MAPPINGS = parse_mappings({"tables": {"notes": {"primary_key": [{"column": "id"}]}}})
CHANGE = Change("notes", (("id", 1),), "update", 1_764_240_000_000_000, "req-7")


class World:
    def __init__(self, mappings: Mappings = MAPPINGS, max_request_bytes: int = 10 * 1024 * 1024) -> None:
        self.source = FakeSource()
        self.opensearch = FakeOpenSearch()
        self.table = FakeDynamoDBTable.from_template(template_resource("ReplicaTable"))
        self.named_tables: dict[str, FakeDynamoDBTable] = {}
        self.sinks = [
            OpenSearchSink(self.opensearch, max_request_bytes=max_request_bytes),
            DynamoDBSink(FakeDynamoDBClient(self.table, self.named_table), self.table.name, tombstone_ttl_seconds=60),
        ]
        self.reject = RecordingReject()
        self.mappings = mappings

    def named_table(self, name: str) -> FakeDynamoDBTable:
        return self.named_tables.setdefault(name, FakeDynamoDBTable(key_attribute="note_id"))

    def apply(self, reject: Any = "default") -> dict[str, str]:
        chosen = self.reject if reject == "default" else reject
        report = Fetcher(self.mappings, self.source, self.sinks, reject=chosen).apply([CHANGE])
        return {o["sink"]: o["outcome"] for o in report.outcomes}


def test_an_item_above_400_kb_is_recorded_with_a_replayable_change_and_opensearch_is_written() -> None:
    world = World()
    world.source.set("notes", (1,), {"id": 1, "body": "x" * (401 * 1024)}, version=10)

    outcomes = world.apply()

    assert outcomes == {"opensearch": "written", "dynamodb": "rejected"}
    assert world.opensearch.document("notes", "1") is not None
    assert world.table.put_calls == []  # never sent: it could only fail, on every retry
    [rejection] = world.reject.rejections
    assert rejection.reason.startswith("dynamodb: DynamoDB cannot hold notes/1: the item is ")
    assert rejection.correlation_id == "req-7"
    changes, rejected = parse_fetcher_event(rejection.payload, world.mappings, RecordingReject(), "redrive")
    assert (changes, rejected) == ([CHANGE], 0)  # the payload is a fetcher event: replaying it is one invoke


def test_a_document_above_the_request_limit_is_recorded_and_dynamodb_is_written() -> None:
    world = World(max_request_bytes=1024)
    world.source.set("notes", (1,), {"id": 1, "body": "日本" * 400}, version=10)

    assert world.apply() == {"opensearch": "rejected", "dynamodb": "written"}
    assert "request limit" in world.reject.rejections[0].reason


@pytest.mark.parametrize(
    "error",
    [
        RequestError(400, "mapper_parsing_exception", {"error": {"reason": "failed to parse field [body]"}}),
        TransportError(413, "Request Entity Too Large", ""),
    ],
    ids=["400-mapping", "413-too-large"],
)
def test_opensearch_refusing_the_document_itself_is_a_rejection_not_a_retry(error: Exception) -> None:
    world = World()
    world.source.set("notes", (1,), {"id": 1, "body": "x"}, version=10)
    world.opensearch.fail_with = error

    assert world.apply() == {"opensearch": "rejected", "dynamodb": "written"}
    assert "OpenSearch refused notes.g1/1" in world.reject.rejections[0].reason  # the generation behind the alias


def test_dynamodb_validation_errors_are_rejections_and_throttling_is_retried() -> None:
    world = World()
    world.source.set("notes", (1,), {"id": 1, "body": "x"}, version=10)
    world.table.fail_with = client_error("ValidationException", "One of the required keys was not given", "PutItem")

    assert world.apply() == {"opensearch": "written", "dynamodb": "rejected"}

    world.table.fail_with = client_error("ProvisionedThroughputExceededException", "slow down", "PutItem")
    with pytest.raises(FetchFailed, match="ProvisionedThroughputExceededException"):
        world.apply()


@pytest.mark.parametrize("status", [429, 503, "N/A"])
def test_opensearch_overload_and_outages_are_retried(status: Any) -> None:
    world = World()
    world.source.set("notes", (1,), {"id": 1}, version=10)
    world.opensearch.fail_with = TransportError(status, "unavailable", "")

    with pytest.raises(FetchFailed, match="opensearch failed"):
        world.apply()
    assert world.reject.rejections == []


def test_without_a_place_to_record_it_a_rejected_row_fails_the_fetch_rather_than_vanish() -> None:
    world = World()
    world.source.set("notes", (1,), {"id": 1, "body": "x" * (401 * 1024)}, version=10)

    with pytest.raises(FetchFailed, match="400 KB"):
        world.apply(reject=None)


def test_if_recording_fails_the_fetch_fails_so_lambda_retries_it() -> None:
    world = World()
    world.source.set("notes", (1,), {"id": 1, "body": "x" * (401 * 1024)}, version=10)

    def broken(reason: str, payload: Any, correlation_id: str) -> None:
        raise RuntimeError("SQS is down")

    with pytest.raises(FetchFailed, match="recording it failed: SQS is down"):
        world.apply(reject=broken)
    assert world.opensearch.document("notes", "1") is not None  # the other sink was still written


def test_a_table_mapped_to_its_own_dynamodb_table_is_written_there() -> None:
    mappings = parse_mappings(
        {
            "tables": {
                "notes": {
                    "primary_key": [{"column": "id"}],
                    "dynamodb": {"table": "notes-own", "partition_key": {"attribute": "note_id", "value": "{id}"}},
                }
            }
        }
    )
    world = World(mappings)
    world.source.set("notes", (1,), {"id": 1, "body": "x"}, version=10)

    assert world.apply() == {"opensearch": "written", "dynamodb": "written"}
    assert world.table.items == {}
    assert world.named_tables["notes-own"].items["1"]["body"] == "x"
    assert json.loads(json.dumps(world.named_tables["notes-own"].put_calls[0]["ExpressionAttributeNames"])) == {
        "#pk": "note_id",
        "#version": "_version",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/app-settings", ("app-settings",)),
        (" arn:aws:dynamodb:eu-west-1:1:table/a , b ,", ("a", "b")),
    ],
)
def test_extra_dynamodb_tables_come_from_their_arns(value: str, expected: tuple[str, ...]) -> None:
    env = {
        "OPENSEARCH_ENDPOINT": "http://os",
        "DYNAMODB_TABLE": "replica",
        "DEAD_LETTER_QUEUE_URL": "q",
        "DYNAMODB_EXTRA_TABLE_ARNS": value,
    }

    settings = SinkSettings.from_env(env)
    assert settings.extra_dynamodb_tables == expected
    assert settings.granted_dynamodb_tables == frozenset({"replica", *expected})


def test_an_extra_table_arn_that_is_not_a_table_is_a_config_error() -> None:
    env = {
        "OPENSEARCH_ENDPOINT": "http://os",
        "DYNAMODB_TABLE": "replica",
        "DEAD_LETTER_QUEUE_URL": "q",
        "DYNAMODB_EXTRA_TABLE_ARNS": "arn:aws:sqs:eu-west-1:1:queue",
    }

    with pytest.raises(ConfigError, match="DYNAMODB_EXTRA_TABLE_ARNS"):
        SinkSettings.from_env(env)


def test_the_fetcher_refuses_at_cold_start_a_mapping_naming_a_table_it_was_not_granted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Given a mapping that sends rows to a DynamoDB table the stack did not grant (ExtraReplicaTableArns empty)
    from fanout import aws
    from fanout.model.mapping import MappingError, default_mappings
    from tests.support.fakes import load_app

    path = tmp_path / "tables.json"
    path.write_text(
        json.dumps(
            {
                "tables": {
                    "notes": {
                        "primary_key": [{"column": "id"}],
                        "dynamodb": {"table": "not-granted", "partition_key": {"attribute": "id", "value": "{id}"}},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    env = {
        "FANOUT_MAPPING_FILE": str(path),
        "DB_HOST": "db",
        "DB_NAME": "app",
        "DB_USER": "fetcher",
        "OPENSEARCH_ENDPOINT": "http://os",
        "DYNAMODB_TABLE": "replica",
        "DEAD_LETTER_QUEUE_URL": "q",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("DB_SECRET_ARN", "DYNAMODB_EXTRA_TABLE_ARNS", "OPENSEARCH_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(aws, "client", lambda *a, **k: object())
    app = load_app("fetcher_fn/app.py", "fetcher_app_granted")
    default_mappings.cache_clear()

    # When / Then the cold start fails loudly, naming the table and the field
    try:
        with pytest.raises(MappingError, match=r"'notes', field 'dynamodb.table': 'not-granted' is not granted"):
            app._fetcher()
    finally:
        app._fetcher.cache_clear()
        default_mappings.cache_clear()


def test_a_value_with_no_form_in_either_sink_is_rejected_by_both_not_retried_for_ever() -> None:
    # Given a JSON column holding NaN (Python's json accepts it; neither JSON nor DynamoDB has it)
    from fanout.source.rows import JsonText

    world = World(parse_mappings({"tables": {"notes": {"primary_key": [{"column": "id"}], "json_columns": ["j"]}}}))
    world.source.set("notes", (1,), {"id": 1, "j": JsonText('{"x": NaN}')}, version=10)

    assert world.apply() == {"opensearch": "rejected", "dynamodb": "rejected"}
    assert len(world.reject.rejections) == 2
