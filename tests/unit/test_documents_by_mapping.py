"""What each sink stores for a row under a mapping's options, and what it refuses (UnrepresentableRow)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from fanout.model.change import Change
from fanout.model.mapping import TableMapping, parse_mappings
from fanout.model.sink_keys import UnrepresentableRow, dynamodb_key, opensearch_document_id
from fanout.sinks.dynamodb import dynamodb_item, dynamodb_item_size, dynamodb_tombstone, to_dynamodb_value
from fanout.sinks.opensearch import opensearch_document, to_json_value
from fanout.source.rows import JsonText

SETTINGS = parse_mappings(
    {
        "tables": {
            "settings": {
                "primary_key": [{"column": "tenant", "type": "string"}, {"column": "slug", "type": "string"}],
                "json_columns": ["doc"],
                "opensearch": {"document_id": "{tenant}:{slug}", "rename": {"body": "text"}, "exclude": ["secret"]},
                "dynamodb": {
                    "table": "app-settings",
                    "partition_key": {"attribute": "tenant_id", "value": "{tenant}"},
                    "sort_key": {"attribute": "sk", "value": "setting#{slug}"},
                    "attributes": ["title", "doc", "blob"],
                    "rename": {"title": "name"},
                    "binary": "base64",
                },
            }
        }
    }
).tables["settings"]
CHANGE = Change("settings", (("tenant", "acme"), ("slug", "dark mode")), "update", 1)
ROW = {
    "tenant": "acme",
    "slug": "dark mode",
    "title": "Dark mode",
    "body": "on",
    "secret": "s3cr3t",
    "doc": JsonText('{"on": true, "level": 2.5}'),
    "blob": b"\x00\x01",
}


def only(spec: dict[str, Any]) -> TableMapping:
    return parse_mappings({"tables": {"t": {"primary_key": [{"column": "id"}], **spec}}}).tables["t"]


def test_the_document_is_renamed_without_excluded_columns_under_its_formatted_id() -> None:
    assert opensearch_document_id(SETTINGS, CHANGE) == "acme:dark%20mode"
    assert opensearch_document(SETTINGS, ROW) == {
        "tenant": "acme",
        "slug": "dark mode",
        "title": "Dark mode",
        "text": "on",
        "doc": {"on": True, "level": 2.5},
        "blob": "AAE=",
    }


def test_the_item_has_the_projected_renamed_attributes_under_its_own_key_attributes() -> None:
    item = dynamodb_item(SETTINGS, CHANGE, ROW, version=7)

    assert item == {
        "tenant_id": "acme",
        "sk": "setting#dark%20mode",
        "name": "Dark mode",
        "doc": {"on": True, "level": Decimal("2.5")},
        "blob": "AAE=",  # binary: base64
        "_table": "settings",
        "_version": Decimal(7),
        "_deleted": False,
    }
    for value in item.values():
        TypeSerializer().serialize(value)
    tombstone = dynamodb_tombstone(SETTINGS, CHANGE, version=8, expires_at=100)
    assert (tombstone["tenant_id"], tombstone["sk"], tombstone["_deleted"]) == ("acme", "setting#dark%20mode", True)


@pytest.mark.parametrize(
    ("spec", "row", "sink"),
    [
        ({}, {"id": 1, "_id": "x"}, "opensearch"),  # a metadata field, unknown until the row is read
        ({"opensearch": {"rename": {"a": "b"}}}, {"id": 1, "a": 1, "b": 2}, "opensearch"),
        ({}, {"id": 1, "_version": 3}, "dynamodb"),
        ({}, {"id": 1, "pk": "x"}, "dynamodb"),
        ({"dynamodb": {"attributes": ["gone"]}}, {"id": 1}, "dynamodb"),
        ({"json_columns": ["j"]}, {"id": 1, "j": JsonText('{"": 1}')}, "dynamodb"),  # empty map key
        ({"json_columns": ["j"]}, {"id": 1, "j": JsonText("{not json")}, "both"),
    ],
    ids=["os-metadata", "os-rename-collision", "ddb-reserved", "ddb-key-name", "ddb-unknown", "ddb-empty", "bad-json"],
)
def test_a_row_the_mapping_cannot_place_is_unrepresentable(
    spec: dict[str, Any], row: dict[str, Any], sink: str
) -> None:
    mapping = only(spec)
    change = Change("t", (("id", 1),), "update", 1)

    if sink in ("opensearch", "both"):
        with pytest.raises(UnrepresentableRow):
            opensearch_document(mapping, row)
    if sink in ("dynamodb", "both"):
        with pytest.raises(UnrepresentableRow):
            dynamodb_item(mapping, change, row, 1)


def test_keys_that_render_empty_are_unrepresentable_and_too_long_ones_bounded() -> None:
    mapping = only({"dynamodb": {"table": "own", "partition_key": {"attribute": "id", "value": "{id}"}}})
    string_key = parse_mappings(
        {
            "tables": {
                "t": {
                    "primary_key": [{"column": "name", "type": "string"}],
                    "dynamodb": {"table": "own", "partition_key": {"attribute": "name", "value": "{name}"}},
                }
            }
        }
    ).tables["t"]

    assert dynamodb_key(mapping, Change("t", (("id", 0),), "update", 1)) == {"id": "0"}
    with pytest.raises(UnrepresentableRow, match="would be empty"):
        dynamodb_key(string_key, Change("t", (("name", ""),), "update", 1))
    # 700 chars, 4200 encoded: above DynamoDB's 2048 bytes, so bounded (prefix + SHA-256), not refused
    [long_key] = dynamodb_key(string_key, Change("t", (("name", "é" * 700),), "update", 1)).values()
    assert len(long_key.encode()) <= 2048 and long_key.startswith("%C3%A9") and "{v1-sha256:" in long_key
    long_id = opensearch_document_id(string_key, Change("t", (("name", "x" * 513),), "update", 1))
    assert len(long_id) == 512 and long_id.startswith("x" * 400) and long_id.endswith("}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 11, 27, 8, 0, 0, 500000, tzinfo=dt.UTC), "2026-11-27T08:00:00.500000Z"),
        (dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-11-27T08:00:00Z"),
        (dt.datetime(2026, 11, 27, 10, 0), "2026-11-27T10:00:00"),  # DATETIME: no zone, as stored
        (JsonText('{"a": [1, 2.5, "x", null, false]}'), {"a": [1, 2.5, "x", None, False]}),
        (JsonText('"just a string"'), "just a string"),
        (JsonText("12345678901234567890"), 12345678901234567890),
    ],
    ids=["timestamp-utc", "aware-elsewhere", "datetime-naive", "json-object", "json-string", "json-bigint"],
)
def test_times_and_json_in_opensearch(value: Any, expected: Any) -> None:
    assert to_json_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            JsonText('{"a": 1.10, "b": [1, true, null], "c": ""}'),
            {"a": Decimal("1.10"), "b": [Decimal(1), True, None], "c": ""},
        ),
        (JsonText("1e300"), "1E+300"),  # beyond DynamoDB's numbers: kept as exact text, not refused
        (JsonText("[]"), []),
        (frozenset(), []),
        (dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC), "2026-11-27T08:00:00Z"),
    ],
    ids=["json-object", "json-huge-number", "json-empty-list", "empty-set", "timestamp"],
)
def test_json_sets_and_times_in_dynamodb(value: Any, expected: Any) -> None:
    result = to_dynamodb_value(value)

    assert result == expected
    TypeSerializer().serialize(result)  # boto3 takes it (no floats)


@pytest.mark.parametrize(
    ("item", "size"),
    [
        ({"pk": "abc"}, 2 + 3),  # name + UTF-8 bytes
        ({"n": Decimal("123.45")}, 1 + 3 + 1),  # 5 significant digits: 3 bytes, plus 1
        ({"n": Decimal("1000")}, 1 + 1 + 1),  # trailing zeros are trimmed
        ({"b": b"\x00" * 10}, 1 + 10),
        ({"f": True, "z": None}, (1 + 1) + (1 + 1)),
        ({"l": ["ab", Decimal(1)]}, 1 + 3 + (2 + 1) + (2 + 1)),  # 3 overhead, 1 per element
        ({"m": {"k": "v"}}, 1 + 3 + (1 + 1 + 1)),
        ({"é": "日本"}, 2 + 6),
    ],
)
def test_item_size_is_counted_as_dynamodb_counts_it(item: dict[str, Any], size: int) -> None:
    assert dynamodb_item_size(item) == size
