"""The sinks against real servers: a real OpenSearch node (or $OPENSEARCH_ENDPOINT)
and DynamoDB on ministack, with the table built from template.yaml's definition.

Each sink must keep the highest version it has seen: a late (lower-version)
write is STALE and changes nothing, a retry of the same version is harmless,
and a delete leaves a tombstone that a stale upsert cannot get past.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.sinks import Outcome, RowRejected
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.rows import RowState
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.integration import create_replica_table
from tests.support.mappings import in_index

POSTS = default_mappings().get("posts")


def row(key: int, title: str) -> dict[str, Any]:
    return {
        "id": key,
        "title": title,
        "body": 'Ünïcödé 🚀 "quoted" back\\slash 日本語',
        "author": "ann",
        "status": "published",
        "updated_at": dt.datetime(2026, 11, 27, 10, 0, 0, 123456),
    }


@pytest.fixture
def posts_mapping() -> Any:
    """The posts mapping, pointed at a fresh index so tests never share documents."""

    return in_index(POSTS, f"posts-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def opensearch_sink(opensearch_endpoint: str, posts_mapping: Any) -> Any:
    client = make_client(opensearch_endpoint)
    yield OpenSearchSink(client), client
    delete_index(client, posts_mapping.opensearch.index)


@pytest.fixture
def replica_table(local_aws: dict[str, str]) -> Any:
    """A DynamoDB table with exactly the key schema and TTL that template.yaml declares."""
    table = create_replica_table(local_aws)
    yield table
    table.delete()


def test_opensearch_keeps_the_highest_version(opensearch_sink: Any, posts_mapping: Any) -> None:
    sink, client = opensearch_sink
    change = Change("posts", (("id", 7),), "update", 1)
    index = posts_mapping.opensearch.index

    assert sink.apply(posts_mapping, change, RowState(row(7, "v200"), 200)) is Outcome.WRITTEN
    assert sink.apply(posts_mapping, change, RowState(row(7, "v100"), 100)) is Outcome.STALE
    assert sink.apply(posts_mapping, change, RowState(row(7, "v200"), 200)) is Outcome.WRITTEN  # retry
    got = client.get(index=index, id="7")
    assert got["_version"] == 200 and got["_source"]["title"] == "v200"
    assert got["_source"]["body"] == row(7, "")["body"]
    assert got["_source"]["updated_at"] == "2026-11-27T10:00:00.123456"

    assert sink.apply(posts_mapping, change, RowState(None, 300)) is Outcome.DELETED
    assert not client.exists(index=index, id="7")
    # the tombstone outlives the document: a late upsert read before the delete cannot resurrect it
    assert sink.apply(posts_mapping, change, RowState(row(7, "v250"), 250)) is Outcome.STALE
    assert not client.exists(index=index, id="7")
    # a later state (the row re-inserted) does get through
    assert sink.apply(posts_mapping, change, RowState(row(7, "v400"), 400)) is Outcome.WRITTEN
    assert client.get(index=index, id="7")["_source"]["title"] == "v400"


def test_opensearch_delete_of_a_never_seen_row_is_fine(opensearch_sink: Any, posts_mapping: Any) -> None:
    sink, client = opensearch_sink
    change = Change("posts", (("id", 8),), "delete", 1)
    assert sink.apply(posts_mapping, change, RowState(None, 500)) is Outcome.DELETED
    assert sink.apply(posts_mapping, change, RowState(row(8, "older"), 400)) is Outcome.STALE


def test_opensearch_index_is_created_with_tombstones_kept_long_enough(opensearch_sink: Any, posts_mapping: Any) -> None:
    sink, client = opensearch_sink
    sink.apply(posts_mapping, Change("posts", (("id", 1),), "insert", 1), RowState(row(1, "x"), 1))
    (settings,) = client.indices.get_settings(index=posts_mapping.opensearch.index).values()  # the alias's generation
    assert settings["settings"]["index"]["gc_deletes"] == "1h"


def test_dynamodb_keeps_the_highest_version(replica_table: Any) -> None:
    sink = dynamodb_sink(replica_table, tombstone_ttl_seconds=3600, clock=lambda: 1_000_000.0)
    change = Change("posts", (("id", 7),), "update", 1)

    assert sink.apply(POSTS, change, RowState(row(7, "v200"), 200)) is Outcome.WRITTEN
    assert sink.apply(POSTS, change, RowState(row(7, "v100"), 100)) is Outcome.STALE
    assert sink.apply(POSTS, change, RowState(row(7, "v200"), 200)) is Outcome.WRITTEN  # retry
    item = replica_table.get_item(Key={"pk": "posts#7"}, ConsistentRead=True)["Item"]
    assert item["title"] == "v200" and item["_version"] == Decimal(200) and item["_deleted"] is False
    assert item["id"] == Decimal(7) and item["body"] == row(7, "")["body"]

    assert sink.apply(POSTS, change, RowState(None, 300)) is Outcome.DELETED
    tombstone = replica_table.get_item(Key={"pk": "posts#7"}, ConsistentRead=True)["Item"]
    assert tombstone["_deleted"] is True and tombstone["_ttl"] == Decimal(1_000_000 + 3600)
    assert "title" not in tombstone
    assert sink.apply(POSTS, change, RowState(row(7, "v250"), 250)) is Outcome.STALE
    assert replica_table.get_item(Key={"pk": "posts#7"}, ConsistentRead=True)["Item"]["_deleted"] is True
    assert sink.apply(POSTS, change, RowState(row(7, "v400"), 400)) is Outcome.WRITTEN
    assert replica_table.get_item(Key={"pk": "posts#7"}, ConsistentRead=True)["Item"]["title"] == "v400"


# --------------------------------------------------------------------------- batches


def test_opensearch_bulk_answers_per_row_written_stale_deleted_and_rejected(
    opensearch_sink: Any, posts_mapping: Any
) -> None:
    # Given a document at version 200, and a sink that takes small requests only
    sink, client = opensearch_sink
    assert sink.apply(posts_mapping, Change("posts", (("id", 1),), "update", 1), RowState(row(1, "v200"), 200))
    small = OpenSearchSink(client, max_request_bytes=2000)
    huge = dict(row(4, "huge"), body="x" * 5000)
    # When one _bulk batch carries an older state, a new row, a delete and a row above the limit
    items = [
        (Change("posts", (("id", 1),), "update", 1), RowState(row(1, "v100"), 100)),
        (Change("posts", (("id", 2),), "insert", 1), RowState(row(2, "new"), 300)),
        (Change("posts", (("id", 3),), "delete", 1), RowState(None, 300)),
        (Change("posts", (("id", 4),), "update", 1), RowState(huge, 300)),
    ]
    outcomes = small.apply_batch(posts_mapping, items)
    # Then each row has its own outcome, and only the oversized one is refused
    assert outcomes[:3] == [Outcome.STALE, Outcome.WRITTEN, Outcome.DELETED]
    assert isinstance(outcomes[3], RowRejected)
    client.indices.refresh(index=posts_mapping.opensearch.index)
    assert client.get(index=posts_mapping.opensearch.index, id="1")["_source"]["title"] == "v200"
    assert client.get(index=posts_mapping.opensearch.index, id="2")["_version"] == 300


def test_dynamodb_parallel_conditional_writes_keep_the_highest_version(replica_table: Any) -> None:
    # Given an item at version 200
    sink = dynamodb_sink(replica_table, tombstone_ttl_seconds=3600)
    assert sink.apply(POSTS, Change("posts", (("id", 1),), "update", 1), RowState(row(1, "v200"), 200))
    # When a batch writes an older state of it, twenty new rows and a delete, in parallel
    items = [(Change("posts", (("id", 1),), "update", 1), RowState(row(1, "v100"), 100))]
    items += [(Change("posts", (("id", k),), "insert", 1), RowState(row(k, f"n{k}"), 300)) for k in range(2, 22)]
    items += [(Change("posts", (("id", 22),), "delete", 1), RowState(None, 300))]
    outcomes = sink.apply_batch(POSTS, items)
    # Then the older state is stale, the rest applied, and what is stored matches
    assert outcomes == [Outcome.STALE] + [Outcome.WRITTEN] * 20 + [Outcome.DELETED]
    stored = replica_table.get_item(Key={"pk": "posts#1"}, ConsistentRead=True)["Item"]
    assert stored["title"] == "v200" and stored["_version"] == Decimal(200)
    assert replica_table.get_item(Key={"pk": "posts#21"}, ConsistentRead=True)["Item"]["title"] == "n21"
    assert replica_table.get_item(Key={"pk": "posts#22"}, ConsistentRead=True)["Item"]["_deleted"] is True
