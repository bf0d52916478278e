"""Building what each sink stores from a row read from MySQL.

pymysql hands back Python values (int, Decimal, datetime, bytes, ...). Each
sink gets them in the form it can hold without losing information:

========================  =============================  ==========================
MySQL (pymysql value)     OpenSearch document (JSON)     DynamoDB attribute
========================  =============================  ==========================
NULL (None)               null                           NULL
integers (int)            number                         N (exact)
DECIMAL (Decimal)         string, exact digits           N (exact, no float) (*)
FLOAT/DOUBLE (float)      number                         N (via its repr) (*)
DATETIME/TIMESTAMP        ISO 8601 string                ISO 8601 string
DATE / TIME               ISO 8601 string                ISO 8601 string
CHAR/TEXT/ENUM (str)      string                         S ("" kept)
SET (set of str)          sorted list of strings         L of S
BINARY/BLOB/BIT (bytes)   base64 string                  B
========================  =============================  ==========================

(*) DynamoDB numbers hold 38 significant digits within ±1E+126; a value beyond
that (a DECIMAL(65,30) with many digits, a DOUBLE of 1e300) is stored as a
string of its exact digits rather than rounded or refused on every retry.

The session runs in UTC (see :mod:`fanout.db`), so TIMESTAMP values are UTC;
DATETIME values carry no zone and are written as they are stored.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

from .change import Change
from .mapping import RESERVED_ITEM_ATTRIBUTES, TableMapping

Row = dict[str, Any]


def _iso_time(value: dt.timedelta) -> str:
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    micros = abs(int(round(total * 1_000_000)))
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}" + (f".{micro:06d}" if micro else "")


def to_json_value(value: Any) -> Any:
    """A MySQL value as a JSON value for OpenSearch."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _iso_time(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"no JSON form for a value of type {type(value).__name__}")


def _dynamodb_number(value: Decimal) -> Decimal | str:
    from boto3.dynamodb.types import DYNAMODB_CONTEXT

    try:
        DYNAMODB_CONTEXT.create_decimal(value)  # traps rounding, overflow and underflow
    except ArithmeticError:
        return str(value)
    return value


def to_dynamodb_value(value: Any) -> Any:
    """A MySQL value as a boto3 DynamoDB resource-layer value (numbers as Decimal)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return _dynamodb_number(Decimal(value))
    if isinstance(value, Decimal):
        return _dynamodb_number(value)
    if isinstance(value, float):
        return _dynamodb_number(Decimal(repr(value)))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return to_json_value(value)


def opensearch_document(mapping: TableMapping, row: Row) -> dict[str, Any]:
    """The document indexed in OpenSearch for a row."""
    return {column: to_json_value(value) for column, value in row.items()}


def dynamodb_partition_key(change: Change) -> str:
    return f"{change.table}#{change.document_id}"


def dynamodb_item(mapping: TableMapping, change: Change, row: Row, version: int) -> dict[str, Any]:
    """The DynamoDB item for a present row: the row's columns plus our bookkeeping."""
    clashing = RESERVED_ITEM_ATTRIBUTES.intersection(row)
    if clashing:
        raise ValueError(f"columns {sorted(clashing)} of {mapping.table} clash with the sink's item attributes")
    item = {column: to_dynamodb_value(value) for column, value in row.items()}
    item.update(
        {
            "pk": dynamodb_partition_key(change),
            "_table": mapping.table,
            "_version": Decimal(version),
            "_deleted": False,
        }
    )
    return item


def dynamodb_tombstone(mapping: TableMapping, change: Change, version: int, expires_at: int) -> dict[str, Any]:
    """The item left for a deleted row, so that a stale upsert cannot resurrect it."""
    return {
        "pk": dynamodb_partition_key(change),
        "_table": mapping.table,
        "_version": Decimal(version),
        "_deleted": True,
        "_ttl": Decimal(expires_at),
    }
