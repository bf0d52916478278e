"""What each sink stores for a MySQL value, a present row and a deleted row."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.sinks.dynamodb import dynamodb_item, dynamodb_tombstone, to_dynamodb_value
from fanout.sinks.opensearch import opensearch_document, to_json_value

POSTS = default_mappings().tables["posts"]
CHANGE = Change("posts", (("id", 42),), "update", 1764240000123456, "req-1")
TEXT = 'emoji 😀, CJK 漢字, "quotes", back\\slash, new\nline'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (0, 0),
        (-(2**63), -(2**63)),
        (2**64 - 1, 2**64 - 1),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("1.10"), "1.10"),  # the declared scale is kept
        (0.1, 0.1),
        (dt.datetime(2025, 11, 27, 10, 0, 0), "2025-11-27T10:00:00"),
        (dt.datetime(2025, 11, 27, 10, 0, 0, 1), "2025-11-27T10:00:00.000001"),
        (dt.date(2025, 2, 28), "2025-02-28"),
        (dt.timedelta(hours=10, minutes=5, seconds=3), "10:05:03"),
        (dt.timedelta(hours=838, minutes=59, seconds=59), "838:59:59"),  # TIME's maximum, beyond a day
        (dt.timedelta(hours=-838, minutes=-59, seconds=-59), "-838:59:59"),
        (-dt.timedelta(minutes=30), "-00:30:00"),
        (dt.timedelta(seconds=1, microseconds=500), "00:00:01.000500"),
        (-dt.timedelta(seconds=1, microseconds=500000), "-00:00:01.500000"),
        (TEXT, TEXT),
        ("", ""),
        ({"b", "a"}, ["a", "b"]),
        (frozenset(), []),
        (b"\x00\xffbin", base64.b64encode(b"\x00\xffbin").decode()),
        (bytearray(b"bits"), "Yml0cw=="),
    ],
    ids=lambda v: type(v).__name__,
)
def test_to_json_value(value: Any, expected: Any) -> None:
    result = to_json_value(value)

    assert result == expected
    assert type(result) is type(expected)
    json.dumps(result)  # and it is JSON


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (False, False),
        (7, Decimal(7)),
        (2**64 - 1, Decimal("18446744073709551615")),
        (Decimal("12345678901234567890.123456789"), Decimal("12345678901234567890.123456789")),
        (0.1, Decimal("0.1")),  # via repr: the float's shortest digits, not its binary expansion
        (1e-7, Decimal("1E-7")),
        (dt.datetime(2025, 11, 27, 10, 0, 0, 250000), "2025-11-27T10:00:00.250000"),
        (dt.date(2025, 2, 28), "2025-02-28"),
        (dt.timedelta(hours=-1, minutes=-2), "-01:02:00"),
        (TEXT, TEXT),
        ("", ""),
        ({"b", "a"}, ["a", "b"]),
        (b"\x00\xffbin", b"\x00\xffbin"),
        (bytearray(b"bits"), b"bits"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_to_dynamodb_value(value: Any, expected: Any) -> None:
    result = to_dynamodb_value(value)

    assert result == expected
    assert type(result) is type(expected)
    if isinstance(result, Decimal):
        assert str(result) == str(expected)  # exact digits, not merely an equal number
    TypeSerializer().serialize(result)  # and boto3 accepts it


@pytest.mark.parametrize("value", [object(), 1 + 2j, [1, 2], {"a": 1}])
@pytest.mark.parametrize("convert", [to_json_value, to_dynamodb_value])
def test_an_unsupported_type_is_a_type_error_naming_it(convert: Any, value: Any) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        convert(value)


ROW = {
    "id": 42,
    "title": TEXT,
    "body": "",
    "author": None,
    "status": "published",
    "updated_at": dt.datetime(2025, 11, 27, 10, 0, 0, 123456),
}


def test_opensearch_document_is_the_row_as_json() -> None:
    document = opensearch_document(POSTS, ROW)

    assert json.loads(json.dumps(document)) == {
        "id": 42,
        "title": TEXT,
        "body": "",
        "author": None,
        "status": "published",
        "updated_at": "2025-11-27T10:00:00.123456",
    }


def test_dynamodb_item_is_the_row_plus_bookkeeping() -> None:
    item = dynamodb_item(POSTS, CHANGE, ROW, version=1764240000999999)

    assert item["pk"] == "posts#42"
    assert item["_table"] == "posts"
    assert item["_version"] == Decimal(1764240000999999) and isinstance(item["_version"], Decimal)
    assert item["_deleted"] is False
    assert "_ttl" not in item
    assert item["id"] == Decimal(42)
    assert item["title"] == TEXT and item["body"] == "" and item["author"] is None
    assert item["updated_at"] == "2025-11-27T10:00:00.123456"
    for value in item.values():
        TypeSerializer().serialize(value)


def test_dynamodb_item_key_uses_the_encoded_document_id() -> None:
    change = Change("posts", (("tenant", "a|b c"), ("id", 7)), "update", 1)

    assert dynamodb_item(POSTS, change, {"id": 7}, version=1)["pk"] == "posts#a%7Cb%20c|7"


def test_dynamodb_tombstone_marks_the_row_deleted_and_expiring() -> None:
    tombstone = dynamodb_tombstone(POSTS, CHANGE, version=1764240003000000, expires_at=1764844800)

    assert tombstone == {
        "pk": "posts#42",
        "_table": "posts",
        "_version": Decimal(1764240003000000),
        "_deleted": True,
        "_ttl": Decimal(1764844800),
    }


@pytest.mark.parametrize(
    "value",
    [
        Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),  # DECIMAL(65,30)
        1e300,  # a DOUBLE column's value
    ],
    ids=["decimal-65-digits", "double-1e300"],
)
def test_every_storable_mysql_number_can_be_written_to_dynamodb(value: Any) -> None:
    # Given a value a MySQL DECIMAL(65,30) / DOUBLE column can hold
    item = dynamodb_item(POSTS, CHANGE, {"id": 42, "amount": value}, version=1)

    # When boto3 serialises the item for PutItem (N: 38 digits, 1E-130 <= |x| < 1E+38; else the exact S)
    # Then it does not fail: a failure here repeats on every retry, so the row never replicates
    TypeSerializer().serialize(item["amount"])
