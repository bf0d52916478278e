"""Batched conditional writes to DynamoDB, against ministack with the table built from template.yaml.

First what DynamoDB's batched forms do (ministack 1.5.33 reproduces AWS here), which is why the sink
writes batches with TransactWriteItems and not PartiQL's BatchExecuteStatement; then the sink's batched
path: per-row outcomes, failure isolation, retries, and items identical to what PutItem alone writes.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError
from samtranslator.yaml_helper import yaml_parse

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.pipeline.wiring import aws_config
from fanout.sinks import Outcome, RowRejected, SinkError
from fanout.sinks.dynamodb import MAX_TRANSACTION_ITEMS, DynamoDBSink
from fanout.source.rows import JsonText, RowState
from tests.support.aws import aws_client, dynamodb_sink, table_client
from tests.support.fault_injection import FaultyEndpoint
from tests.support.files import ROOT
from tests.support.integration import create_replica_table
from tests.support.mappings import in_dynamodb_table

POSTS = default_mappings().get("posts")


@pytest.fixture
def replica_table(local_aws: dict[str, str]) -> Any:
    table = create_replica_table(local_aws)
    yield table
    table.delete()


@pytest.fixture
def second_table(local_aws: dict[str, str]) -> Any:
    table = create_replica_table(local_aws)
    yield table
    table.delete()


def row(key: int, title: str, **extra: Any) -> dict[str, Any]:
    return {"id": key, "title": title, "body": "b", "author": "ann", "status": "published", **extra}


def change(key: int, action: str = "update") -> Change:
    return Change("posts", (("id", key),), action, 1)


def stored(table: Any, key: int) -> dict[str, Any] | None:
    return table.get_item(Key={"pk": f"posts#{key}"}, ConsistentRead=True).get("Item")


# --------------------------------------------------------------------------- what DynamoDB's batched forms do


def partiql(table: Any, statements: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    client = table.meta.client
    answer = client.batch_execute_statement(
        Statements=[
            {"Statement": sql, "Parameters": params, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            for sql, params in statements
        ]
    )
    return answer["Responses"]


def test_partiql_cannot_say_put_if_absent_or_older(replica_table: Any) -> None:
    # Given one item at version 5 with a column, and a key with no item
    name = replica_table.name
    replica_table.put_item(Item={"pk": "posts#1", "_version": Decimal(5), "title": "t"})
    # When a PartiQL batch UPDATEs both under the version condition, and INSERTs the existing one
    responses = partiql(
        replica_table,
        [
            (
                f'UPDATE "{name}" SET "_version" = ?, "_deleted" = ? WHERE pk = ? AND "_version" <= ?',
                [9, True, "posts#1", 9],
            ),
            (f'UPDATE "{name}" SET "_version" = ? WHERE pk = ? AND "_version" <= ?', [9, "posts#2", 9]),
            (f"INSERT INTO \"{name}\" VALUE {{'pk': ?, '_version': ?}}", ["posts#1", 10]),
        ],
    )
    # Then UPDATE keeps the attributes it does not name (a tombstone would keep the row's columns),
    assert "Error" not in responses[0] and stored(replica_table, 1) == {
        "pk": "posts#1",
        "_version": Decimal(9),
        "_deleted": True,
        "title": "t",
    }
    # UPDATE of a missing item fails its condition (with no old item), and INSERT fails on an existing one:
    # a new-or-older write needs two statements, in two calls, and still cannot replace a whole item
    assert responses[1]["Error"]["Code"] == "ConditionalCheckFailed" and "Item" not in responses[1]["Error"]
    assert responses[2]["Error"]["Code"] == "DuplicateItem"
    assert stored(replica_table, 2) is None


def put(table_name: str, item: dict[str, Any], version: int) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table_name,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#pk) OR #version <= :version",
            "ExpressionAttributeNames": {"#pk": "pk", "#version": "_version"},
            "ExpressionAttributeValues": {":version": Decimal(version)},
        }
    }


def test_a_cancelled_transaction_names_each_rows_reason_and_applies_none(replica_table: Any) -> None:
    # Given an item at version 5
    replica_table.put_item(Item={"pk": "posts#1", "_version": Decimal(5)})
    client, name = replica_table.meta.client, replica_table.name
    # When one transaction carries an older state of it and a new item
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[
                put(name, {"pk": "posts#1", "_version": Decimal(4)}, 4),
                put(name, {"pk": "posts#2", "_version": Decimal(4)}, 4),
            ]
        )
    # Then the call is cancelled with one reason per row, and nothing is written
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    codes = [reason["Code"] for reason in cancelled.value.response["CancellationReasons"]]
    assert codes == ["ConditionalCheckFailed", "None"]
    assert stored(replica_table, 2) is None


def test_an_unwritable_item_fails_the_whole_transaction(replica_table: Any) -> None:
    # Given a transaction whose second item nests deeper than DynamoDB's 32 levels
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    client, name = replica_table.meta.client, replica_table.name
    # When it is sent, Then the whole call is refused before any row is applied
    with pytest.raises(ClientError) as refused:
        client.transact_write_items(
            TransactItems=[
                put(name, {"pk": "posts#1", "_version": Decimal(1)}, 1),
                put(name, {"pk": "posts#2", "_version": Decimal(1), "deep": deep}, 1),
            ]
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert stored(replica_table, 1) is None


# --------------------------------------------------------------------------- the sink's batched path


def every_type_row(key: int) -> dict[str, Any]:
    """A row with each kind of value the sink writes: binary, JSON maps and lists, a set, NULL, big numbers."""
    return row(
        key,
        f"t{key}",
        blob=b"\x00\xff" * 8,
        doc=JsonText(json.dumps({"a": [1, 2.5, None, True, {"b": "c"}], "n": 12345678901234567890123456789012345678})),
        tags=frozenset({"x", "y"}),
        nothing=None,
        big=Decimal("99999999999999999999999999999999999999"),
        huge=10**40,  # beyond 38 digits: kept as its text, as the PutItem path does
        tiny=Decimal("1E-129"),
        when=dt.datetime(2026, 12, 1, 12, 0, 0, 5),
    )


@pytest.mark.parametrize(
    ("batch_writes", "operations"),
    [("transactions", ["TransactWriteItems"]), ("puts", ["PutItem"] * 32)],
)
def test_the_batched_path_writes_items_identical_to_put_item(
    replica_table: Any, second_table: Any, batch_writes: str, operations: list[str]
) -> None:
    # Given the same rows, states and clock for two sinks
    clock = lambda: 1_700_000_000.0  # noqa: E731
    items = [(change(k), RowState(every_type_row(k), 100 + k)) for k in range(1, 31)]
    items += [(change(k, "delete"), RowState(None, 500)) for k in (31, 32)]
    # When one writes them as a batch and the other row by row with PutItem
    client = table_client(replica_table)
    batched = DynamoDBSink(client, replica_table.name, tombstone_ttl_seconds=60, clock=clock, batch_writes=batch_writes)
    alone = dynamodb_sink(second_table, tombstone_ttl_seconds=60, clock=clock)
    sent: list[str] = []
    client.meta.events.register(
        "before-send.dynamodb.*", lambda request, **_: sent.append(request.headers["X-Amz-Target"].decode())
    )
    outcomes = batched.apply_batch(POSTS, items)
    assert [alone.apply(POSTS, c, s) for c, s in items] == outcomes == [Outcome.WRITTEN] * 30 + [Outcome.DELETED] * 2
    # Then the batch took one transaction (or a PutItem a row), and every stored item is the same, attribute by
    # attribute and type by type
    assert sent == [f"DynamoDB_20120810.{operation}" for operation in operations]
    for k in range(1, 33):
        assert stored(replica_table, k) == stored(second_table, k)
    item = stored(replica_table, 1)
    assert item is not None and item["blob"] == Binary(b"\x00\xff" * 8) and item["nothing"] is None
    assert item["huge"] == str(10**40) and item["tags"] == ["x", "y"] and item["doc"]["a"][4] == {"b": "c"}


def test_a_batch_answers_per_row_stale_written_deleted_and_rejected(replica_table: Any) -> None:
    # Given an item at version 200 and a batch of 250 rows (three transactions) that includes an older state of
    # it, a delete, and a row DynamoDB refuses (nested too deep) hidden among them
    sink = dynamodb_sink(replica_table, tombstone_ttl_seconds=3600)
    assert sink.apply(POSTS, change(1), RowState(row(1, "v200"), 200)) is Outcome.WRITTEN
    deep = "[" * 40 + "]" * 40
    items = [(change(1), RowState(row(1, "v100"), 100))]
    items += [(change(k), RowState(row(k, f"n{k}"), 300)) for k in range(2, 250)]
    items[137] = (change(138), RowState(row(138, "deep", doc=JsonText(deep)), 300))
    items += [(change(250, "delete"), RowState(None, 300))]
    assert len(items) > 2 * MAX_TRANSACTION_ITEMS
    # When the batch is written
    outcomes = sink.apply_batch(POSTS, items)
    # Then only the refused row is rejected, the older state is stale, and every other row is applied
    assert outcomes[0] is Outcome.STALE and outcomes[-1] is Outcome.DELETED
    assert isinstance(outcomes[137], RowRejected) and "posts/138" in str(outcomes[137])
    assert [o for i, o in enumerate(outcomes) if i not in (0, 137, 249)] == [Outcome.WRITTEN] * 247
    assert stored(replica_table, 1)["title"] == "v200"  # type: ignore[index]
    assert stored(replica_table, 138) is None and stored(replica_table, 249)["title"] == "n249"  # type: ignore[index]
    assert stored(replica_table, 250)["_deleted"] is True  # type: ignore[index]


def test_stale_rows_are_settled_and_the_rest_of_the_transaction_sent_again(replica_table: Any) -> None:
    # Given every other row of a batch already stored at a newer version
    sink = dynamodb_sink(replica_table, tombstone_ttl_seconds=3600)
    for k in range(0, 40, 2):
        sink.apply(POSTS, change(k), RowState(row(k, "newer"), 900))
    # When the batch brings older states of those and new rows
    outcomes = sink.apply_batch(POSTS, [(change(k), RowState(row(k, "older"), 100)) for k in range(40)])
    # Then the stored newer ones stay, the others are written
    assert outcomes == [Outcome.STALE, Outcome.WRITTEN] * 20
    assert {stored(replica_table, k)["title"] for k in range(0, 40, 2)} == {"newer"}  # type: ignore[index]
    assert {stored(replica_table, k)["title"] for k in range(1, 40, 2)} == {"older"}  # type: ignore[index]


def faulty_table(local_aws: dict[str, str], endpoint: FaultyEndpoint, name: str) -> Any:
    """The table behind ``endpoint``, through a client configured as the fetch path's (its one retry policy)."""
    return boto3.resource(
        "dynamodb",
        endpoint_url=endpoint.url,
        region_name=local_aws["AWS_DEFAULT_REGION"],
        aws_access_key_id=local_aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=local_aws["AWS_SECRET_ACCESS_KEY"],
        config=aws_config(),
    ).Table(name)


def test_a_throttled_transaction_is_retried_by_botocore_alone_then_reported_failed(
    local_aws: dict[str, str], replica_table: Any
) -> None:
    endpoint = FaultyEndpoint(local_aws["AWS_ENDPOINT_URL"])
    try:
        waits: list[float] = []
        sink = dynamodb_sink(faulty_table(local_aws, endpoint, replica_table.name), 3600, sleep=waits.append)
        batch = [(change(k), RowState(row(k, "t"), 10)) for k in range(5)]
        # Given DynamoDB throttling the next two transactions, When a batch is written,
        endpoint.throttle(puts=0, transactions=2)
        # Then botocore retries the call, and it is applied
        assert sink.apply_batch(POSTS, batch) == [Outcome.WRITTEN] * 5
        assert endpoint.throttled == 2
        # Given DynamoDB throttling for longer than botocore retries, Then every row is a retryable failure
        endpoint.throttle(puts=0, transactions=1000)
        outcomes = sink.apply_batch(POSTS, [(c, RowState(row(k, "t2"), 20)) for k, (c, _) in enumerate(batch)])
        assert all(isinstance(o, SinkError) and "ProvisionedThroughputExceeded" in str(o) for o in outcomes)
        # after botocore's three calls, not the sink's six times three: the sink never re-sent a whole call
        assert endpoint.throttled == 2 + 3 and waits == []
        assert stored(replica_table, 0)["_version"] == Decimal(10)  # type: ignore[index]
    finally:
        endpoint.close()


def test_an_endpoint_that_never_answers_fails_the_batch_well_inside_the_fetchers_timeout(
    local_aws: dict[str, str],
) -> None:
    # Given a DynamoDB endpoint that accepts connections and never answers, and the fetcher's timeout
    timeout = fetcher_timeout_seconds()
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # never accepted, never read
        table = boto3.resource(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            region_name=local_aws["AWS_DEFAULT_REGION"],
            aws_access_key_id=local_aws["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=local_aws["AWS_SECRET_ACCESS_KEY"],
            config=aws_config(),
        ).Table("replica")
        sink = dynamodb_sink(table, 3600)
        # When a batch is written
        started = time.monotonic()
        outcomes = sink.apply_batch(POSTS, [(change(k), RowState(row(k, "t"), 10)) for k in range(3)])
        elapsed = time.monotonic() - started
    # Then every row is a retryable failure, reported with more than half the invocation's time left
    assert all(isinstance(o, SinkError) and "unavailable" in str(o) for o in outcomes)
    assert elapsed < timeout / 2, f"{elapsed:.1f} s of the fetcher's {timeout} s"


def fetcher_timeout_seconds() -> int:
    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    declared = template["Resources"]["FetcherFunction"]["Properties"].get("Timeout")
    return int(declared or template["Globals"]["Function"]["Timeout"])


def test_a_batch_of_one_is_a_plain_put_item(replica_table: Any) -> None:
    sent: list[str] = []
    client = table_client(replica_table)
    sink = DynamoDBSink(client, replica_table.name, tombstone_ttl_seconds=3600)
    client.meta.events.register(
        "before-send.dynamodb.*", lambda request, **_: sent.append(request.headers["X-Amz-Target"].decode())
    )
    assert sink.apply_batch(POSTS, [(change(1), RowState(row(1, "t"), 1))]) == [Outcome.WRITTEN]
    assert sent == ["DynamoDB_20120810.PutItem"]  # one write unit, not a transaction's two


def test_a_mapping_with_its_own_table_batches_into_it(local_aws: dict[str, str], second_table: Any) -> None:
    mapping = in_dynamodb_table(POSTS, second_table.name)
    sink = DynamoDBSink(aws_client(local_aws, "dynamodb"), None, 3600)
    assert sink.apply_batch(mapping, [(change(k), RowState(row(k, "t"), 1)) for k in range(3)]) == [Outcome.WRITTEN] * 3
    assert stored(second_table, 2)["title"] == "t"  # type: ignore[index]
