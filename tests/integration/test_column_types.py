"""Every MySQL column type, through MySQL 8.0, the real reader and both real sinks.

One table holds a column of each type; each test writes one row whose only
non-NULL column is the type under test (with its edge values), runs the fetch
path (the Fetcher over the locking reader, the OpenSearch sink on the
project's server and the DynamoDB sink on ministack), and checks the exact
value each sink stored against the documented mapping (fanout/sinks/__init__.py,
README "Type mapping"), then that fanout.operations.verify agrees.

The index is created beforehand with the explicit mapping the README
recommends (unsigned_long, double, date_nanos, ...): that is how a production
index for such a table is set up, and what a real OpenSearch needs to accept
BIGINT UNSIGNED above 2^63-1 or a DOUBLE of 1e300.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pymysql
import pytest

from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import TableMapping, parse_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.verify import compare_row
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.integration import create_replica_table, fetch
from tests.support.mappings import in_index

TEXT = 'emoji 😀, CJK 漢字, "quotes", back\\slash, it\'s, tab\there\nnew line'

ALL_TYPES = """
CREATE TABLE all_types (
    id INT NOT NULL PRIMARY KEY,
    c_null VARCHAR(10) NULL,
    c_tinyint TINYINT NULL,
    c_int_unsigned INT UNSIGNED NULL,
    c_bigint BIGINT NULL,
    c_bigint_unsigned BIGINT UNSIGNED NULL,
    c_decimal DECIMAL(65, 30) NULL,
    c_decimal_money DECIMAL(12, 2) NULL,
    c_float FLOAT NULL,
    c_double DOUBLE NULL,
    c_date DATE NULL,
    c_datetime DATETIME(6) NULL,
    c_timestamp TIMESTAMP(6) NULL,
    c_time TIME(6) NULL,
    c_year YEAR NULL,
    c_char CHAR(5) NULL,
    c_varchar VARCHAR(200) NULL,
    c_text TEXT NULL,
    c_enum ENUM('draft', 'published') NULL,
    c_set SET('x', 'y', 'z') NULL,
    c_json JSON NULL,
    c_bit BIT(10) NULL,
    c_binary BINARY(4) NULL,
    c_blob BLOB NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci
"""

# The explicit index mapping the README recommends per MySQL type.
INDEX_MAPPINGS = {
    "properties": {
        "c_tinyint": {"type": "byte"},
        "c_int_unsigned": {"type": "long"},
        "c_bigint": {"type": "long"},
        "c_bigint_unsigned": {"type": "unsigned_long"},
        "c_decimal": {"type": "keyword"},
        "c_decimal_money": {"type": "scaled_float", "scaling_factor": 100},
        "c_float": {"type": "float"},
        "c_double": {"type": "double"},
        "c_date": {"type": "date"},
        "c_datetime": {"type": "date_nanos"},
        "c_timestamp": {"type": "date_nanos"},
        "c_time": {"type": "keyword"},
        "c_year": {"type": "short"},
        "c_enum": {"type": "keyword"},
        "c_set": {"type": "keyword"},
        "c_bit": {"type": "long"},
        "c_binary": {"type": "binary"},
        "c_blob": {"type": "binary"},
        # the README's advice for JSON whose shape varies: kept in _source, not indexed (a dynamically mapped
        # "big": 12345678901234567890 would be a long, which the engine refuses above 2^63-1)
        "c_json": {"type": "object", "enabled": False},
    }
}


@dataclass(frozen=True)
class Case:
    column: str
    sql: str  # the value as SQL (with %s for params)
    params: tuple[Any, ...]
    opensearch: Any  # the exact JSON value in the document (read with make_client: a fraction is a Decimal)
    dynamodb: Any  # the exact attribute value boto3 reads back

    @property
    def name(self) -> str:
        return self.column


BLOB = bytes(range(256)) * 3
CASES = [
    Case("c_null", "NULL", (), None, None),
    Case("c_tinyint", "-128", (), -128, Decimal(-128)),
    Case("c_int_unsigned", "4294967295", (), 4294967295, Decimal(4294967295)),
    Case("c_bigint", "-9223372036854775808", (), -(2**63), Decimal(-(2**63))),
    Case("c_bigint_unsigned", "18446744073709551615", (), 2**64 - 1, Decimal(2**64 - 1)),
    # 65 significant digits: beyond DynamoDB's 38, so stored as the exact string, never rounded
    Case(
        "c_decimal",
        "'12345678901234567890123456789012345.123456789012345678901234567890'",
        (),
        "12345678901234567890123456789012345.123456789012345678901234567890",
        "12345678901234567890123456789012345.123456789012345678901234567890",
    ),
    # DynamoDB keeps the number exactly but not its scale: it trims trailing zeros (1.10 reads back as 1.1)
    Case("c_decimal_money", "'-1234567890.10'", (), "-1234567890.10", Decimal("-1234567890.1")),
    Case("c_float", "1.1", (), Decimal("1.1"), Decimal("1.1")),
    Case("c_double", "1e300", (), Decimal("1E+300"), "1E+300"),
    Case("c_date", "'2026-02-28'", (), "2026-02-28", "2026-02-28"),
    # DATETIME has no zone: written as stored, whatever the session zone
    Case("c_datetime", "'2026-11-27 10:00:00.123456'", (), "2026-11-27T10:00:00.123456", "2026-11-27T10:00:00.123456"),
    # TIMESTAMP is an instant: written at 10:00:00.5 in a +02:00 session, it is 08:00:00.5 UTC
    Case("c_timestamp", "'2026-11-27 10:00:00.5'", (), "2026-11-27T08:00:00.500000Z", "2026-11-27T08:00:00.500000Z"),
    # MySQL's TIME range is -838:59:59 ... 838:59:59, whatever the fraction digits (it refuses -838:59:59.000001)
    Case("c_time", "'-838:59:59'", (), "-838:59:59", "-838:59:59"),
    Case("c_year", "2155", (), 2155, Decimal(2155)),
    Case("c_char", "'ab'", (), "ab", "ab"),  # CHAR's pad spaces are not part of the value
    Case("c_varchar", "%s", (TEXT,), TEXT, TEXT),
    Case("c_text", "%s", ("",), "", ""),  # DynamoDB takes empty strings in non-key attributes
    Case("c_enum", "'published'", (), "published", "published"),
    Case("c_set", "'z,x'", (), ["x", "z"], ["x", "z"]),
    Case(
        "c_json",
        "%s",
        ('{"a": 1.5, "b": [1, "two", null, true], "c": {"d": "é😀"}, "big": 12345678901234567890, "e": ""}',),
        {"a": Decimal("1.5"), "b": [1, "two", None, True], "c": {"d": "é😀"}, "big": 12345678901234567890, "e": ""},
        {
            "a": Decimal("1.5"),
            "b": [Decimal(1), "two", None, True],
            "c": {"d": "é😀"},
            "big": Decimal(12345678901234567890),
            "e": "",
        },
    ),
    Case("c_bit", "b'1010101010'", (), 682, Decimal(682)),
    Case("c_binary", "X'00FF0102'", (), base64.b64encode(b"\x00\xff\x01\x02").decode(), b"\x00\xff\x01\x02"),
    Case("c_blob", "%s", (BLOB,), base64.b64encode(BLOB).decode(), BLOB),
]
EXTRA_CASES = [  # a second value for the types with more than one edge worth showing
    Case("c_set", "''", (), [], []),
    Case("c_time", "'12:34:56'", (), "12:34:56", "12:34:56"),
    Case("c_time", "'838:59:59'", (), "838:59:59", "838:59:59"),
    Case("c_time", "'-00:00:00.000001'", (), "-00:00:00.000001", "-00:00:00.000001"),  # below a second, signed
    Case("c_double", "0.1", (), Decimal("0.1"), Decimal("0.1")),
    Case("c_json", "'[]'", (), [], []),
]


def mapping_document(binary_opensearch: str = "base64", binary_dynamodb: str = "binary") -> dict[str, Any]:
    return {
        "tables": {
            "all_types": {
                "primary_key": [{"column": "id", "type": "int"}],
                "json_columns": ["c_json"],
                "opensearch": {"index": "placeholder", "binary": binary_opensearch},
                "dynamodb": {"binary": binary_dynamodb},
            }
        }
    }


@pytest.fixture(scope="module")
def world(mysql: dict[str, Any], opensearch_endpoint: str, local_aws: dict[str, str]) -> Iterator[dict[str, Any]]:

    schema = f"fanout_t_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(**mysql, charset="utf8mb4", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{schema}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{schema}`")
        cur.execute(ALL_TYPES)
    settings = DatabaseSettings(
        host=mysql["host"], port=mysql["port"], name=schema, user=mysql["user"], password=mysql["password"]
    )
    client = make_client(opensearch_endpoint)
    index = f"all-types-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index, body={"mappings": INDEX_MAPPINGS})
    mapping = in_index(parse_mappings(mapping_document()).tables["all_types"], index)
    table = create_replica_table(local_aws)
    # the writer's session is deliberately not UTC: TIMESTAMP values must still arrive as UTC
    writer = pymysql.connect(**mysql, database=schema, charset="utf8mb4", autocommit=True)
    with writer.cursor() as cur:
        cur.execute("SET time_zone = '+02:00'")
    try:
        yield {
            "settings": settings,
            "mapping": mapping,
            "opensearch": client,
            "table": table,
            "sinks": [OpenSearchSink(client), dynamodb_sink(table, tombstone_ttl_seconds=3600)],
            "writer": writer,
            "next_id": iter(range(1, 10_000)),
        }
    finally:
        writer.close()
        delete_index(client, index)
        table.delete()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{schema}`")
        admin.close()


def replicate(world: dict[str, Any], case: Case, mapping: TableMapping | None = None) -> tuple[dict[str, Any], Any]:
    """Insert a row with the case's column set, run the fetch path, return (document, item)."""
    mapping = mapping or world["mapping"]
    key = next(world["next_id"])
    with world["writer"].cursor() as cur:
        cur.execute(f"INSERT INTO all_types (id, {case.column}) VALUES (%s, {case.sql})", (key, *case.params))  # noqa: S608
    change = Change("all_types", (("id", key),), "insert", 1_764_240_000_000_000)
    report = fetch(world["settings"], mapping, change, world["sinks"])
    assert {o["outcome"] for o in report.outcomes} == {"written"}, report.outcomes
    document = world["opensearch"].get(index=mapping.opensearch.index, id=opensearch_document_id(mapping, change))
    item = world["table"].get_item(Key=dynamodb_key(mapping, change), ConsistentRead=True)["Item"]
    conn = connect(world["settings"])
    try:
        comparison = compare_row(conn, mapping, change, world["opensearch"], world["table"])
    finally:
        conn.close()
    assert comparison.agrees, (comparison.opensearch_problem, comparison.dynamodb_problem)
    return document["_source"], item


def same_exactly(actual: Any, expected: Any) -> bool:
    """Equal, of the same type, and for numbers with the same digits (1.10 is not 1.1)."""
    from boto3.dynamodb.types import Binary

    if isinstance(actual, Binary):
        return isinstance(expected, bytes) and actual.value == expected
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, Decimal):
        return str(actual) == str(expected)
    if isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(same_exactly(actual[k], expected[k]) for k in actual)
    if isinstance(actual, list):
        return len(actual) == len(expected) and all(same_exactly(a, e) for a, e in zip(actual, expected, strict=True))
    return bool(actual == expected)


@pytest.mark.parametrize("case", CASES + EXTRA_CASES, ids=lambda c: c.name)
def test_each_column_type_reaches_both_sinks_as_documented(world: dict[str, Any], case: Case) -> None:
    # Given a row whose only value is of the type under test; When it is replicated
    document, item = replicate(world, case)

    # Then OpenSearch holds the documented JSON value and DynamoDB the documented attribute, exactly
    assert case.column in document
    assert same_exactly(document[case.column], case.opensearch), (document[case.column], case.opensearch)
    assert case.column in item
    assert same_exactly(item[case.column], case.dynamodb), (item[case.column], case.dynamodb)
    # and every other column is there as NULL
    assert document["c_varchar" if case.column != "c_varchar" else "c_text"] is None


@pytest.mark.parametrize(
    ("opensearch_binary", "dynamodb_binary", "in_document", "in_item"),
    [
        ("exclude", "exclude", None, None),
        ("base64", "base64", base64.b64encode(BLOB).decode(), base64.b64encode(BLOB).decode()),
    ],
    ids=["excluded", "base64-in-both"],
)
def test_binary_columns_can_be_excluded_or_base64_per_sink(
    world: dict[str, Any], opensearch_binary: str, dynamodb_binary: str, in_document: Any, in_item: Any
) -> None:

    # Given a mapping that says what to do with BINARY/BLOB in each sink
    configured = parse_mappings(mapping_document(opensearch_binary, dynamodb_binary)).tables["all_types"]
    mapping = in_index(configured, world["mapping"].opensearch.index)

    # When a row with a BLOB is replicated
    document, item = replicate(world, Case("c_blob", "%s", (BLOB,), None, None), mapping)

    # Then the blob is left out, or written as base64 text
    assert document.get("c_blob") == in_document and ("c_blob" in document) == (in_document is not None)
    assert item.get("c_blob") == in_item and ("c_blob" in item) == (in_item is not None)
    assert document["c_null"] is None and item["c_null"] is None  # the other columns are still there
