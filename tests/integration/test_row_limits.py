"""Rows a sink can never take, and tables of one's own, against the real servers.

A row above DynamoDB's 400 KB item limit (or the OpenSearch request limit)
can never be written however often it is retried. It must be recorded, in the
dead-letter queue (SQS on ministack) with its reason and a replayable change,
and the other sink must still be written; the fetch must not fail (a failure
would be retried, and end in the DLQ only as an opaque failed invoke).

A mapping may also send a table's rows to a DynamoDB table of its own, with
its own key attributes (here a partition and a sort key).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import Mappings, parse_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.verify import compare_row
from fanout.pipeline.fetch_queue import parse_fetcher_event
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.aws import aws_client, aws_resource, dynamodb_sink
from tests.support.indices import delete_index
from tests.support.integration import fetch
from tests.support.mappings import in_index

BLOBS = """
CREATE TABLE blobs (
    id INT NOT NULL PRIMARY KEY,
    note VARCHAR(50) NOT NULL,
    data LONGBLOB NOT NULL,
    body LONGTEXT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
"""


@pytest.fixture
def world(db_settings: Any, opensearch_endpoint: str, replica_table: Any, local_aws: dict[str, str]) -> Iterator[Any]:
    sqs = aws_client(local_aws, "sqs")
    queue = sqs.create_queue(QueueName=f"fanout-test-dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    conn = connect(db_settings)
    with conn.cursor() as cur:
        cur.execute(BLOBS)
    mapping = in_index(
        parse_mappings(
            {"tables": {"blobs": {"primary_key": [{"column": "id"}], "opensearch": {"binary": "exclude"}}}}
        ).tables["blobs"],
        f"blobs-{uuid.uuid4().hex[:8]}",
    )
    client = make_client(opensearch_endpoint)
    yield {
        "settings": db_settings,
        "db": conn,
        "mapping": mapping,
        "opensearch": client,
        "table": replica_table,
        "sqs": sqs,
        "queue": queue,
        "reject": QueueRejectRecorder(sqs, queue, source="fetcher"),
    }
    delete_index(client, mapping.opensearch.index)
    sqs.delete_queue(QueueUrl=queue)


def dead_letters(world: dict[str, Any]) -> list[dict[str, Any]]:
    got = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def blob_change(key: int) -> Change:
    return Change("blobs", (("id", key),), "insert", 1_764_240_000_000_000, "req-limits")


def test_a_row_above_the_dynamodb_item_limit_is_recorded_and_opensearch_still_written(world: dict[str, Any]) -> None:
    # Given a row whose blob alone is above DynamoDB's 400 KB (OpenSearch leaves binaries out here)
    with world["db"].cursor() as cur:
        cur.execute("INSERT INTO blobs VALUES (1, 'big', %s, 'small body')", (b"\x01" * (450 * 1024),))
    sinks = [OpenSearchSink(world["opensearch"]), dynamodb_sink(world["table"], tombstone_ttl_seconds=3600)]

    # When the fetch path runs (and does not raise: nothing here is worth retrying)
    report = fetch(world["settings"], world["mapping"], blob_change(1), sinks, world["reject"])

    # Then OpenSearch has the row, DynamoDB does not, and the DLQ says why, with a change that can be replayed
    outcomes = {o["sink"]: o["outcome"] for o in report.outcomes}
    assert outcomes == {"opensearch": "written", "dynamodb": "rejected"}
    assert world["opensearch"].get(index=world["mapping"].opensearch.index, id="1")["_source"]["note"] == "big"
    assert "Item" not in world["table"].get_item(Key=dynamodb_key(world["mapping"], blob_change(1)))
    [record] = dead_letters(world)
    assert record["rejected_by"] == "fetcher" and record["correlation_id"] == "req-limits"
    assert record["reason"].startswith("dynamodb: DynamoDB cannot hold blobs/1: the item is ")
    assert "400 KB" in record["reason"]

    # And once the row fits, replaying the recorded payload through the fetcher writes it
    with world["db"].cursor() as cur:
        cur.execute("UPDATE blobs SET data = 'fits now' WHERE id = 1")
    mappings = Mappings({"blobs": world["mapping"]})
    changes, rejected = parse_fetcher_event(json.loads(record["payload"]), mappings, world["reject"], "redrive")
    assert rejected == 0 and changes == [blob_change(1)]
    conn = connect(world["settings"])
    Fetcher(mappings, DatabaseSource.over(conn), sinks, reject=world["reject"]).apply(changes)
    item = world["table"].get_item(Key=dynamodb_key(world["mapping"], blob_change(1)), ConsistentRead=True)["Item"]
    assert item["data"].value == b"fits now"
    assert compare_row(world["db"], world["mapping"], blob_change(1), world["opensearch"], world["table"]).agrees


def test_a_document_above_the_opensearch_request_limit_is_recorded_and_dynamodb_still_written(
    world: dict[str, Any],
) -> None:
    # Given a domain that takes requests up to 64 KiB, and a row whose text is larger
    with world["db"].cursor() as cur:
        cur.execute("INSERT INTO blobs VALUES (2, 'long', 'b', %s)", ("長" * 40_000,))
    sinks = [
        OpenSearchSink(world["opensearch"], max_request_bytes=64 * 1024),
        dynamodb_sink(world["table"], tombstone_ttl_seconds=3600),
    ]

    # When
    report = fetch(world["settings"], world["mapping"], blob_change(2), sinks, world["reject"])

    # Then
    assert {o["sink"]: o["outcome"] for o in report.outcomes} == {"opensearch": "rejected", "dynamodb": "written"}
    assert not world["opensearch"].exists(index=world["mapping"].opensearch.index, id="2")
    item = world["table"].get_item(Key=dynamodb_key(world["mapping"], blob_change(2)), ConsistentRead=True)["Item"]
    assert item["body"] == "長" * 40_000
    [record] = dead_letters(world)
    assert "request limit" in record["reason"] and record["reason"].startswith("opensearch: ")


def test_a_mapping_can_send_rows_to_its_own_dynamodb_table_with_a_sort_key(
    db_settings: Any, opensearch_endpoint: str, local_aws: dict[str, str]
) -> None:
    # Given a table of one's own keyed by tenant (partition) and setting (sort), and a mapping naming it
    dynamodb = aws_resource(local_aws, "dynamodb")
    own = dynamodb.create_table(
        TableName=f"fanout-test-settings-{uuid.uuid4().hex[:8]}",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "tenant_id", "AttributeType": "S"},
            {"AttributeName": "setting", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"}, {"AttributeName": "setting", "KeyType": "RANGE"}],
    )
    own.wait_until_exists()
    spec = json.loads(json.dumps(_bundled_spec("tenant_settings")))
    spec["dynamodb"] = {
        "table": own.name,
        "partition_key": {"attribute": "tenant_id", "value": "{tenant}"},
        "sort_key": {"attribute": "setting", "value": "{setting_key}"},
        "attributes": ["value", "revision"],
        "rename": {"revision": "rev"},
    }
    mapping = in_index(
        parse_mappings({"tables": {"tenant_settings": spec}}).tables["tenant_settings"],
        f"own-table-{uuid.uuid4().hex[:8]}",
    )
    client = make_client(opensearch_endpoint)
    sinks = [
        OpenSearchSink(client),
        # no default table: the mapping's own table is the only one it can write
        DynamoDBSink(aws_client(local_aws, "dynamodb"), None, tombstone_ttl_seconds=3600),
    ]
    conn = connect(db_settings)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tenant_settings (tenant, setting_key, value, revision) VALUES ('acme', 'a/b c', '[1]', 3)"
        )
    change = Change("tenant_settings", (("tenant", "acme"), ("setting_key", "a/b c")), "insert", 1_764_240_000_000_000)

    try:
        # When
        fetch(db_settings, mapping, change, sinks)

        # Then the item is in that table under its own key, with the projected, renamed attributes
        item = own.get_item(Key={"tenant_id": "acme", "setting": "a%2Fb%20c"}, ConsistentRead=True)["Item"]
        assert item["value"] == [1] and item["rev"] == 3 and "revision" not in item and "description" not in item
        assert dynamodb_key(mapping, change) == {"tenant_id": "acme", "setting": "a%2Fb%20c"}
        document = client.get(index=mapping.opensearch.index, id=opensearch_document_id(mapping, change))
        assert document["_id"] == "acme:a%2Fb%20c" and document["_source"]["summary"] is None
        assert compare_row(conn, mapping, change, client, None, dynamodb.Table).agrees

        # and a delete leaves its tombstone there
        with conn.cursor() as cur:
            cur.execute("DELETE FROM tenant_settings WHERE tenant = 'acme'")
        fetch(db_settings, mapping, change, sinks)
        tombstone = own.get_item(Key={"tenant_id": "acme", "setting": "a%2Fb%20c"}, ConsistentRead=True)["Item"]
        assert tombstone["_deleted"] is True and "value" not in tombstone
        assert compare_row(conn, mapping, change, client, None, dynamodb.Table).agrees
    finally:
        own.delete()
        delete_index(client, mapping.opensearch.index)


def _bundled_spec(table: str) -> dict[str, Any]:
    from fanout.model.mapping import DEFAULT_MAPPING_FILE

    return dict(json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))["tables"][table])
