"""Building what each sink stores from a row read from MySQL.

The reader hands over Python values (pymysql's, plus the conversions in
:mod:`fanout.source.values`). Each sink gets them in the form it can hold
without losing information (README.md "Type mapping" has the same table, with
the explicit OpenSearch mapping recommended for each type):

=============================  ==================================  ==================================
MySQL column (value read)      OpenSearch document (JSON)          DynamoDB attribute
=============================  ==================================  ==================================
NULL                           null                                NULL
TINYINT … BIGINT [UNSIGNED]    number, exact digits (1)            N, exact
DECIMAL(p,s)                   string, exact digits and scale      N, exact value (2)
FLOAT / DOUBLE                 number (shortest round-trip form)   N from the same digits (2)
DATE                           "2026-11-27"                        S, same text
DATETIME(fsp)                  "2026-11-27T10:00:00.123456",       S, same text
                               no zone: as stored (3)
TIMESTAMP(fsp)                 "2026-11-27T10:00:00.123456Z",      S, same text
                               UTC (3)
TIME(fsp)                      "-838:59:59.000000" … "838:59:59"   S, same text
YEAR                           number                              N
CHAR/VARCHAR/TEXT (utf8mb4)    string, as stored                   S, as stored; "" kept (4)
ENUM                           string                              S
SET                            sorted list of member strings       L of S (sorted; [] when empty)
JSON                           the parsed value (object, array,    M / L / S / N / BOOL / NULL,
                               string, number, boolean, null)      numbers exact (2), never floats
BIT(n)                         number (the bits as unsigned int)   N
BINARY/VARBINARY/BLOB          base64 string, or left out          B (raw bytes), or base64 S, or
                               (``opensearch.binary``)             left out (``dynamodb.binary``)
=============================  ==================================  ==================================

(1) JSON carries every integer exactly; OpenSearch's dynamic mapping makes an
integer field ``long``, which holds BIGINT but not BIGINT UNSIGNED above
2^63-1: map such a column as ``unsigned_long`` (OpenSearch 2.8+) in an index
you create beforehand (the sink never changes an existing index).

(2) DynamoDB numbers hold 38 significant digits, magnitudes from 1E-130 to
9.9999999999999999999999999999999999999E+125, and DynamoDB trims trailing zeros
(DECIMAL 1.10 reads back as 1.1: the value, not the scale; OpenSearch's string
keeps the scale). DynamoDB hands a number back as plain digits, and boto3's
resource layer refuses more than 38 of them (``decimal.Rounded``): an N of 1E+38
or more would make the whole item unreadable with ``Table.get_item``. So a
number is N only if it has at most 38 significant digits and a magnitude from
1E-130 up to (not including) 1E+38; any other number (a DECIMAL(65,30) with
many digits, a DOUBLE of 1e38 or 1e-131) is stored as S, the exact digits
(``str(Decimal)``), rather than rounded or refused.

(3) The fetcher's session runs in UTC (``time_zone = '+00:00'``). TIMESTAMP
values are UTC and written with ``Z``. DATETIME values carry no zone: they
are written as stored, without one (OpenSearch reads a zone-less date as UTC;
if the application stores local times in DATETIME, search on them knowing
that). Microseconds appear only when non-zero (Python's ``isoformat``);
OpenSearch's date parsing reads both forms. Zero dates ("0000-00-00"), where
sql_mode allows them, arrive as strings and are written as such.

(4) DynamoDB has accepted empty strings and binaries in non-key attributes
since 2020; a key attribute may not be empty, so a key format that renders
empty is refused for that row (see below).

Keys: an id longer than the sink allows (OpenSearch ``_id``: 512 bytes; a
DynamoDB partition key: 2048, a sort key: 1024) is replaced by a bounded one,
:func:`bounded_sink_id`: the start of the id, then ``{v1-sha256:<hex>}``, the
SHA-256 of the whole id. A rendered id never contains a brace, so a bounded id
cannot equal another row's plain id, and two bounded ids are equal only if the
ids are. The full id is kept in the document or item, in ``_fanout_key``
(OpenSearch: the id as text; DynamoDB: a map from key attribute to its full
value), which is how reconcile reads such a key back.

What cannot be stored is refused per row with :class:`UnrepresentableRow`
(an item above DynamoDB's 400 KB, a column the mapping did not expect that collides with a reserved name, a JSON
object key that is empty, ...). The fetcher records such a row in the
dead-letter queue and still writes the other sink; it does not retry it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

from fanout.model.change import Change
from fanout.model.composition import EmbeddedList, EmbeddedRow, OverLimit
from fanout.model.key_format import default_key_text
from fanout.model.mapping import FULL_KEY_FIELD, OPENSEARCH_METADATA_FIELDS, TableMapping
from fanout.source.values import JsonText

Row = dict[str, Any]

MAX_DOCUMENT_ID_BYTES = 512  # OpenSearch's _id limit
MAX_PARTITION_KEY_BYTES = 2048  # DynamoDB's limits on key attribute values
MAX_SORT_KEY_BYTES = 1024
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
# DynamoDB's numbers (see (2) above): at most 38 significant digits, magnitudes from 1E-130 ...
DYNAMODB_NUMBER_DIGITS = 38
DYNAMODB_MIN_EXPONENT = -130
# ... up to 9.99...E+125 in DynamoDB, but boto3 reads back at most 38 plain digits: below 1E+38.
READABLE_MAX_EXPONENT = DYNAMODB_NUMBER_DIGITS - 1
BOUNDED_ID_VERSION = "v1-sha256"  # the marker of a bounded id: "{v1-sha256:<64 hex digits>}"


class UnrepresentableRow(ValueError):
    """The row cannot be stored in a sink as the mapping says; retrying cannot help."""


def _iso_time(value: dt.timedelta) -> str:
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    micros = abs(int(round(total * 1_000_000)))
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}" + (f".{micro:06d}" if micro else "")


def _iso_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat()
    utc = value.astimezone(dt.UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


def _no_constant(name: str) -> Any:
    raise UnrepresentableRow(f"a JSON column holds {name}, which is not JSON (nor storable in either sink)")


def _parse_json(value: JsonText, **options: Any) -> Any:
    try:
        return json.loads(value.text, parse_constant=_no_constant, **options)
    except UnrepresentableRow:
        raise
    except ValueError as exc:
        raise UnrepresentableRow(f"a JSON column holds text that is not JSON ({exc})") from None


def to_json_value(value: Any) -> Any:
    """A MySQL value as a JSON value for OpenSearch."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return _iso_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _iso_time(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, JsonText):
        # numbers as Decimal: a JSON number keeps its digits (the sink's serializer writes them as they are)
        return _parse_json(value, parse_float=Decimal)
    if isinstance(
        value, (EmbeddedRow, EmbeddedList, OverLimit)
    ):  # a composed document's relations (fanout.source.compose)
        return _composed(value, to_json_value)
    raise TypeError(f"no JSON form for a value of type {type(value).__name__}")


def _dynamodb_number(value: Decimal) -> Decimal | str:
    """N (the Decimal) when DynamoDB stores it exactly and boto3 reads it back, else the exact digits (S)."""
    from boto3.dynamodb.types import DYNAMODB_CONTEXT

    try:
        DYNAMODB_CONTEXT.create_decimal(value)  # boto3 writes only what fits 38 digits exactly
    except ArithmeticError:
        return str(value)
    if value and not DYNAMODB_MIN_EXPONENT <= value.adjusted() <= READABLE_MAX_EXPONENT:
        return str(value)
    return value


def _dynamodb_json(value: Any) -> Any:
    """A parsed JSON value (numbers as Decimal) as DynamoDB attribute values."""
    if isinstance(value, dict):
        if "" in value:
            raise UnrepresentableRow("a JSON object has an empty key, which a DynamoDB map cannot hold")
        return {k: _dynamodb_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamodb_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _dynamodb_number(Decimal(value))
    if isinstance(value, Decimal):
        return _dynamodb_number(value)
    raise TypeError(f"no DynamoDB form for a JSON value of type {type(value).__name__}")


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
    if isinstance(value, JsonText):
        return _dynamodb_json(_parse_json(value, parse_float=Decimal))
    if isinstance(
        value, (EmbeddedRow, EmbeddedList, OverLimit)
    ):  # a composed document's relations (fanout.source.compose)
        return _composed(value, to_dynamodb_value)
    return to_json_value(value)


def _composed(value: EmbeddedRow | EmbeddedList | OverLimit, convert: Any) -> Any:
    """A relation of a composed document: a parent as an object, a list of children or values."""
    if isinstance(value, OverLimit):
        raise UnrepresentableRow(value.reason)
    if isinstance(value, EmbeddedRow):
        return {name: convert(item) for name, item in value.items()}
    return [convert(item) for item in value]


# --------------------------------------------------------------------------- OpenSearch


def bounded_sink_id(rendered: str, limit: int) -> str:
    """``rendered`` if it fits ``limit`` UTF-8 bytes, else its start and ``{v1-sha256:<hex of all of it>}``."""
    data = rendered.encode("utf-8")
    if len(data) <= limit:
        return rendered
    suffix = "{" + BOUNDED_ID_VERSION + ":" + hashlib.sha256(data).hexdigest() + "}"
    return data[: limit - len(suffix)].decode("utf-8", "ignore") + suffix


def is_bounded_id(sink_id: str) -> bool:
    return "{" + BOUNDED_ID_VERSION + ":" in sink_id


def opensearch_full_id(mapping: TableMapping, change: Change) -> str:
    """The row's id by the mapping's ``opensearch.document_id`` format (default ``{key}``), whatever its length."""
    return mapping.opensearch_document_id.render(change.table, change.key)


def opensearch_document_id(mapping: TableMapping, change: Change) -> str:
    """The row's document id: its full id, bounded to OpenSearch's 512 bytes (:func:`bounded_sink_id`)."""
    return bounded_sink_id(opensearch_full_id(mapping, change), MAX_DOCUMENT_ID_BYTES)


def _row_change(mapping: TableMapping, row: Row) -> Change:
    return Change(mapping.table, tuple((c, row[c]) for c in mapping.key_columns), "update", 1)


def opensearch_document(mapping: TableMapping, row: Row) -> dict[str, Any]:
    """The document indexed in OpenSearch for a row: renamed, without excluded columns; with the full id
    in ``_fanout_key`` when the document id is a bounded one."""
    document: dict[str, Any] = {}
    for column, value in row.items():
        if column in mapping.opensearch_exclude:
            continue
        if isinstance(value, (bytes, bytearray)) and mapping.opensearch_binary == "exclude":
            continue
        name = mapping.opensearch_field(column)
        if name in document or name in OPENSEARCH_METADATA_FIELDS or name == FULL_KEY_FIELD:
            raise UnrepresentableRow(
                f"column {column!r} of {mapping.table} would be the OpenSearch field {name!r}, which is "
                "taken or reserved; rename or exclude it in the mapping"
            )
        document[name] = to_json_value(value)
    full_id = opensearch_full_id(mapping, _row_change(mapping, row))
    if bounded_sink_id(full_id, MAX_DOCUMENT_ID_BYTES) != full_id:
        document[FULL_KEY_FIELD] = full_id
    return document


# --------------------------------------------------------------------------- DynamoDB


def dynamodb_partition_key(change: Change) -> str:
    """The default partition key value, ``<table>#<key>`` (the format ``{table}#{key}``)."""
    return f"{change.table}#{default_key_text(change.key_values)}"


def dynamodb_key_limits(mapping: TableMapping) -> list[tuple[str, int]]:
    """Each key attribute of the mapping with DynamoDB's limit on its value, in bytes."""
    limits = [(mapping.dynamodb_partition_key.attribute, MAX_PARTITION_KEY_BYTES)]
    if mapping.dynamodb_sort_key is not None:
        limits.append((mapping.dynamodb_sort_key.attribute, MAX_SORT_KEY_BYTES))
    return limits


def _dynamodb_full_key(mapping: TableMapping, change: Change) -> dict[str, str]:
    key: dict[str, str] = {}
    formats = [(mapping.dynamodb_partition_key, "partition")]
    if mapping.dynamodb_sort_key is not None:
        formats.append((mapping.dynamodb_sort_key, "sort"))
    for attribute, kind in formats:
        value = attribute.value.render(change.table, change.key)
        if not value:
            raise UnrepresentableRow(f"the {kind} key {attribute.attribute!r} would be empty, which DynamoDB refuses")
        key[attribute.attribute] = value
    return key


def dynamodb_key(mapping: TableMapping, change: Change) -> dict[str, str]:
    """The row's DynamoDB key attributes, by the mapping's key formats, each bounded to DynamoDB's limit."""
    full = _dynamodb_full_key(mapping, change)
    return {attribute: bounded_sink_id(full[attribute], limit) for attribute, limit in dynamodb_key_limits(mapping)}


def _key_attributes(mapping: TableMapping, change: Change) -> dict[str, Any]:
    """The key attributes, and ``_fanout_key`` (every key attribute's full value) when one is bounded."""
    full = _dynamodb_full_key(mapping, change)
    key: dict[str, Any] = dynamodb_key(mapping, change)
    if key != full:
        key[FULL_KEY_FIELD] = full
    return key


def dynamodb_attributes(mapping: TableMapping, row: Row) -> dict[str, Any]:
    """The row's projected, renamed columns as DynamoDB attribute values."""
    reserved = mapping.dynamodb_reserved_attributes
    attributes: dict[str, Any] = {}
    names = mapping.dynamodb_attributes if mapping.dynamodb_attributes is not None else tuple(row)
    if mapping.composition is not None:  # the root row's columns, and its relations if the item is the document
        relations = mapping.composition.relation_names
        names = tuple(n for n in names if n not in relations)
        if mapping.composition.dynamodb_document:
            names += tuple(n for n in row if n in relations)
    for column in names:
        if column not in row:
            raise UnrepresentableRow(f"column {column!r} in dynamodb.attributes is not a column of {mapping.table}")
        value = row[column]
        if isinstance(value, (bytes, bytearray)):
            if mapping.dynamodb_binary == "exclude":
                continue
            if mapping.dynamodb_binary == "base64":
                value = base64.b64encode(bytes(value)).decode("ascii")
        name = mapping.dynamodb_attribute(column)
        if name in reserved or name in attributes:
            raise UnrepresentableRow(
                f"column {column!r} of {mapping.table} would be the DynamoDB attribute {name!r}, which is "
                "taken or reserved; rename it or leave it out in the mapping"
            )
        attributes[name] = to_dynamodb_value(value)
    return attributes


def dynamodb_item(mapping: TableMapping, change: Change, row: Row, version: int) -> dict[str, Any]:
    """The DynamoDB item for a present row: its projected columns, its key and our bookkeeping."""
    item = dynamodb_attributes(mapping, row)
    item.update(_key_attributes(mapping, change))
    item.update({"_table": mapping.table, "_version": Decimal(version), "_deleted": False})
    return item


def dynamodb_tombstone(mapping: TableMapping, change: Change, version: int, expires_at: int) -> dict[str, Any]:
    """The item left for a deleted row, so that a stale upsert cannot resurrect it."""
    item: dict[str, Any] = _key_attributes(mapping, change)
    item.update({"_table": mapping.table, "_version": Decimal(version), "_deleted": True, "_ttl": Decimal(expires_at)})
    return item


def _number_size(value: Decimal) -> int:
    digits = value.normalize().as_tuple().digits if value else (0,)
    return (len(digits) + 1) // 2 + 1


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (int, Decimal)):
        return _number_size(Decimal(value))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, dict):
        return 3 + sum(len(k.encode("utf-8")) + _value_size(v) + 1 for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 3 + sum(_value_size(v) + 1 for v in value)
    raise TypeError(f"no DynamoDB size for a value of type {type(value).__name__}")


def dynamodb_item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it (attribute names plus values; "Item sizes and formats")."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def check_item_size(item: dict[str, Any]) -> int:
    """The item's size; UnrepresentableRow above DynamoDB's 400 KB, as DynamoDB would refuse it, before sending."""
    size = dynamodb_item_size(item)
    if size > MAX_ITEM_BYTES:
        raise UnrepresentableRow(
            f"the item is {size} bytes, above the {MAX_ITEM_BYTES}-byte (400 KB) item limit; project fewer "
            "columns (dynamodb.attributes) or exclude binaries (dynamodb.binary)"
        )
    return size


def dynamodb_refusal(mapping: TableMapping, change: Change, row: Row, version: int) -> str:
    """Why DynamoDB can never take this row as the mapping shapes it ("" if it can): what the sink refuses."""
    try:
        check_item_size(dynamodb_item(mapping, change, row, version))
    except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no DynamoDB form
        return str(exc)
    return ""


def opensearch_refusal(mapping: TableMapping, row: Row) -> str:
    """Why no OpenSearch document can be built for this row ("" if one can; the index may still refuse it)."""
    try:
        opensearch_document(mapping, row)
    except (UnrepresentableRow, TypeError) as exc:
        return str(exc)
    return ""
