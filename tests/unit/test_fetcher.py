"""The fetcher: each changed row is re-read and written, version-gated, to every enabled sink.

The sinks are the real OpenSearchSink and DynamoDBSink over in-memory fakes of
their clients, so version gating, tombstones and error mapping are exercised
end to end within the process.
"""

from __future__ import annotations

import gc
import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from fanout.config import ConfigError
from fanout.model.mapping import default_mappings, parse_mappings
from fanout.pipeline.fetch_queue import parse_fetcher_event
from fanout.pipeline.fetcher import FetchFailed
from fanout.sinks import Outcome
from fanout.sinks.opensearch import DEFAULT_GC_DELETES, OpenSearchSink, opensearch_document
from fanout.source.rows import SourceReadError
from tests.support.fakes import (
    FakeContext,
    FakeOpenSearch,
    RecordingReject,
    client_error,
    load_event,
    load_record_body,
)
from tests.support.world import NOW, POSTS, TOMBSTONE_TTL, World, change, load_fetcher_app, row


@pytest.fixture
def world() -> World:
    return World()


BOTH_WRITTEN = {"opensearch": Outcome.WRITTEN.value, "dynamodb": Outcome.WRITTEN.value}
BOTH_DELETED = {"opensearch": Outcome.DELETED.value, "dynamodb": Outcome.DELETED.value}
BOTH_STALE = {"opensearch": Outcome.STALE.value, "dynamodb": Outcome.STALE.value}


# --------------------------------------------------------------------------- parse_fetcher_event


@pytest.mark.parametrize("event", [[], "changes", None, {"changes": {"v": 1}}, {"records": []}])
def test_an_event_without_a_changes_list_is_recorded_and_yields_nothing(event: Any) -> None:
    reject = RecordingReject()

    changes, rejected = parse_fetcher_event(event, POSTS, reject, "req-1")

    assert (changes, rejected) == ([], 1)
    [rejection] = reject.rejections
    assert '"changes" list' in rejection.reason
    assert rejection.payload == event
    assert rejection.correlation_id == "req-1"


def test_an_invalid_message_is_recorded_and_the_valid_ones_are_kept() -> None:
    # Given the sample fetcher record's body with a second, invalid message after the valid one
    event = load_record_body("fetcher_update.json")
    bad = {**event["changes"][0], "pk": {"id": "1 OR 1=1"}}
    event["changes"].append(bad)
    reject = RecordingReject()

    # When
    changes, rejected = parse_fetcher_event(event, POSTS, reject, "req-1")

    # Then
    assert [c.key_values for c in changes] == [(1,)]
    assert rejected == 1
    [rejection] = reject.rejections
    assert rejection.reason.startswith("changes[1].pk.id: ")
    assert rejection.payload == bad


# --------------------------------------------------------------------------- Fetcher.apply


def test_a_present_row_is_written_to_both_sinks(world: World) -> None:
    # Given
    world.source.set("posts", (1,), row(1, "Hello 世界"), version=100)

    # When
    outcomes = world.apply(change(1))

    # Then
    assert outcomes == BOTH_WRITTEN
    assert world.document(1) == opensearch_document(POSTS.tables["posts"], row(1, "Hello 世界"))
    [(_, call)] = [c for c in world.opensearch.calls if c[0] == "index"]
    assert call["params"] == {"version": 100, "version_type": "external_gte"}
    item = world.item(1)
    assert item is not None
    assert (item["title"], item["_version"], item["_deleted"]) == ("Hello 世界", Decimal(100), False)


def test_an_absent_row_is_deleted_leaving_tombstones(world: World) -> None:
    # Given a row that was replicated, then deleted at the source
    world.source.set("posts", (1,), row(1, "first"), version=100)
    world.apply(change(1))
    world.source.set("posts", (1,), None, version=200)

    # When
    outcomes = world.apply(change(1, action="delete"))

    # Then OpenSearch got a versioned delete
    assert outcomes == BOTH_DELETED
    assert world.opensearch.calls[-1] == (
        "delete",
        {"index": "posts.g1", "id": "1", "params": {"version": 200, "version_type": "external_gte"}},
    )
    assert world.document(1) is None
    # and DynamoDB holds a tombstone instead of the row, expiring by the TTL attribute template.yaml declares
    tombstone = world.item(1)
    assert tombstone is not None and world.table.ttl_attribute in tombstone
    assert tombstone == {
        "pk": "posts#1",
        "_table": "posts",
        "_version": Decimal(200),
        "_deleted": True,
        "_ttl": Decimal(int(NOW) + TOMBSTONE_TTL),
    }


def test_deleting_a_row_the_sinks_never_saw_is_still_a_delete(world: World) -> None:
    world.source.set("posts", (9,), None, version=200)

    assert world.apply(change(9, action="delete")) == BOTH_DELETED
    assert (world.item(9) or {}).get("_deleted") is True


def test_an_older_state_after_a_newer_one_is_stale_in_both_sinks(world: World) -> None:
    # Given version 200 already replicated
    world.source.set("posts", (1,), row(1, "newer"), version=200)
    world.apply(change(1))

    # When a delayed fetch arrives with what it read at version 100
    world.source.set("posts", (1,), row(1, "older"), version=100)
    outcomes = world.apply(change(1))

    # Then it is skipped, not raised, and the newer state stays
    assert outcomes == BOTH_STALE
    assert world.titles(1) == ("newer", "newer")


def test_a_stale_write_after_a_delete_does_not_resurrect_the_row(world: World) -> None:
    world.source.set("posts", (1,), None, version=300)
    world.apply(change(1, action="delete"))

    world.source.set("posts", (1,), row(1, "ghost"), version=250)
    outcomes = world.apply(change(1))

    assert outcomes == BOTH_STALE
    assert world.document(1) is None
    assert (world.item(1) or {}).get("_deleted") is True
    assert world.titles(1) == (None, None)


def test_retrying_the_same_state_is_applied_again_as_a_no_op(world: World) -> None:
    world.source.set("posts", (1,), row(1, "same"), version=100)
    world.apply(change(1))

    assert world.apply(change(1)) == BOTH_WRITTEN
    assert world.titles(1) == ("same", "same")


def test_a_row_inserted_again_after_its_delete_is_written(world: World) -> None:
    world.source.set("posts", (1,), None, version=300)
    world.apply(change(1, action="delete"))

    world.source.set("posts", (1,), row(1, "reborn"), version=400)

    assert world.apply(change(1, action="insert")) == BOTH_WRITTEN
    assert world.titles(1) == ("reborn", "reborn")
    assert "_ttl" not in (world.item(1) or {})  # a live row does not expire


def test_an_opensearch_outage_fails_the_fetch_after_dynamodb_was_written(world: World) -> None:
    # Given OpenSearch (first in line) unreachable
    world.source.set("posts", (1,), row(1, "kept"), version=100)
    world.opensearch.fail_with = OpenSearchConnectionError("N/A", "Connection refused", OSError("refused"))

    # When / Then the fetch fails, so Lambda retries it...
    with pytest.raises(FetchFailed, match="posts/1: opensearch failed"):
        world.apply(change(1))
    # ...but DynamoDB was still written; the retry will find it current
    assert world.titles(1) == (None, "kept")


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
        client_error("ProvisionedThroughputExceededException", "slow down", "PutItem"),
    ],
    ids=["unreachable", "throttled"],
)
def test_a_dynamodb_failure_fails_the_fetch_after_opensearch_was_written(world: World, error: Exception) -> None:
    world.source.set("posts", (1,), row(1, "kept"), version=100)
    world.table.fail_with = error

    with pytest.raises(FetchFailed, match="posts/1: dynamodb failed"):
        world.apply(change(1))
    assert world.titles(1) == ("kept", None)


def test_a_read_failure_fails_the_fetch_after_the_other_changes_were_applied(world: World) -> None:
    # Given two changes; the first row's read times out on a lock
    world.source.fail("posts", (1,), SourceReadError("lock wait timeout reading posts key 1; will retry"))
    world.source.set("posts", (2,), row(2, "second"), version=100)

    # When / Then
    with pytest.raises(FetchFailed, match="posts/1: read failed: lock wait timeout") as caught:
        world.apply(change(1), change(2))
    assert "posts/2" not in str(caught.value)
    assert world.titles(2) == ("second", "second")
    assert world.document(1) is None and world.item(1) is None


def test_a_table_with_dynamodb_disabled_never_touches_dynamodb() -> None:
    # Given a mapping that replicates posts to OpenSearch only
    mappings = parse_mappings(
        {"tables": {"posts": {"primary_key": [{"column": "id", "type": "int"}], "dynamodb": {"enabled": False}}}}
    )
    world = World(mappings)
    world.source.set("posts", (1,), row(1, "search only"), version=100)
    world.source.set("posts", (2,), None, version=100)

    # When
    outcomes = world.apply(change(1), change(2, action="delete"))

    # Then
    assert outcomes == {"opensearch": Outcome.DELETED.value}  # the last outcome per sink
    assert world.titles(1) == ("search only", None)
    assert world.table.put_calls == [] and world.table.transactions == [] and world.table.items == {}


def test_the_report_says_what_each_sink_did_with_which_version(world: World) -> None:
    world.source.set("posts", (1,), row(1, "a"), version=100)

    report = world.fetcher().apply([change(1)])

    assert report.as_dict() == {
        "applied": [
            {"table": "posts", "key": "1", "sink": "opensearch", "outcome": "written", "version": 100},
            {"table": "posts", "key": "1", "sink": "dynamodb", "outcome": "written", "version": 100},
        ],
        "rejected": 0,
        "failures": [],
    }


# --------------------------------------------------------------------------- the OpenSearch index


def test_the_first_generation_is_created_once_behind_its_alias_with_gc_deletes(world: World) -> None:
    world.source.set("posts", (1,), row(1, "a"), version=100)
    world.source.set("posts", (2,), None, version=100)

    world.apply(change(1), change(2))
    world.apply(change(1))

    assert world.opensearch.indices.alias_reads == ["posts.write"]  # asked once, then remembered for its TTL
    assert world.opensearch.indices.create_calls == ["posts.g1"]
    assert world.opensearch.indices.created["posts.g1"] == {
        "settings": {"index": {"gc_deletes": DEFAULT_GC_DELETES}},
        "aliases": {"posts": {}, "posts.write": {}},  # searched and written from the first write on
    }
    assert world.opensearch.indices.auto_created == set()  # never left to a write's auto-creation


def test_an_existing_index_is_not_recreated(world: World) -> None:
    world.opensearch.indices.create(index="posts", body={"settings": {}})
    world.opensearch.indices.create_calls.clear()
    world.source.set("posts", (1,), row(1, "a"), version=100)

    assert world.apply(change(1)) == BOTH_WRITTEN
    assert world.opensearch.indices.create_calls == []


def test_an_index_created_concurrently_by_another_fetcher_is_fine(world: World) -> None:
    # Given another fetcher creates the index between our exists() and create()
    world.opensearch.indices.created_concurrently.add("posts")
    world.source.set("posts", (1,), row(1, "a"), version=100)

    assert world.apply(change(1)) == BOTH_WRITTEN


def test_the_tombstone_lifetime_is_configurable() -> None:
    client = FakeOpenSearch()
    sink = OpenSearchSink(client, gc_deletes="6h")

    sink.target_indices(default_mappings().tables["posts"])

    assert client.indices.created["posts.g1"]["settings"]["index"]["gc_deletes"] == "6h"


# --------------------------------------------------------------------------- fetcher_fn/app.py


def test_the_fetcher_handler_applies_the_sample_event(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the handler wired to the in-memory world
    app = load_fetcher_app()
    reject = RecordingReject()
    fetcher = world.fetcher(reject)
    monkeypatch.setattr(app, "_fetcher", lambda: fetcher)
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    world.source.set("posts", (1,), row(1, "from the handler"), version=100)
    event = load_event("fetcher_update.json")
    body = load_record_body("fetcher_update.json")
    body["changes"].append({"v": 1})  # and one message that can never be valid
    event["Records"][0]["body"] = json.dumps(body)

    # When
    result = app.handler(event, FakeContext(aws_request_id="req-fetcher"))

    # Then the valid change is written to both sinks, the invalid one recorded once, and no record retried
    assert result == {"batchItemFailures": [], "rejected": 1}
    assert world.titles(1) == ("from the handler", "from the handler")
    assert [r.correlation_id for r in reject.rejections] == ["sample-correlation-id"]


def _no_client(service: str, *args: Any, **kwargs: Any) -> Any:
    """Stands in for fanout.aws.client so building the dependencies makes no AWS client."""
    return object()


def test_the_fetcher_fails_with_a_config_error_naming_a_missing_dead_letter_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given every setting but DEAD_LETTER_QUEUE_URL
    from fanout import aws

    app = load_fetcher_app()
    for name, value in {
        "DB_HOST": "db.internal",
        "DB_NAME": "fanout",
        "DB_USER": "fetcher",
        "OPENSEARCH_ENDPOINT": "http://opensearch.internal:9200",
        "DYNAMODB_TABLE": "fanout-replica",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("DB_SECRET_ARN", "DEAD_LETTER_QUEUE_URL", "OPENSEARCH_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(aws, "client", _no_client)

    # When / Then the cold start fails loudly, naming the variable, like every other setting
    try:
        with pytest.raises(ConfigError, match="DEAD_LETTER_QUEUE_URL"):
            app._fetcher()
    finally:
        app._fetcher.cache_clear()


def test_what_the_cold_start_built_is_frozen_out_of_the_garbage_collectors_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a fetcher app whose fetch path is built without any service
    app = load_fetcher_app()
    monkeypatch.setattr(app, "FetchPath", lambda **_: SimpleNamespace(fetcher=World().fetcher()))
    gc.unfreeze()
    try:
        # When its first invocation builds the fetcher
        fetcher = app._fetcher()
        # Then everything alive then, the fetcher included, is left out of collections
        assert gc.get_freeze_count() > 0
        assert app._fetcher() is fetcher
    finally:
        gc.unfreeze()
        app._fetcher.cache_clear()
