"""What a value read from MySQL becomes before it is mapped to a sink.

pymysql decodes most column types to an unambiguous Python value (int,
Decimal, float, str, bytes, date, datetime, timedelta). Four need the column's
metadata, which only the reader has, so it converts them here, once, for the
fetcher and for :mod:`fanout.operations.verify` alike:

- ``TIMESTAMP``: pymysql returns a naive datetime in the session time zone.
  The session runs with ``time_zone = '+00:00'`` (:mod:`fanout.source.connection`), so the
  value is UTC and is made zone-aware. ``DATETIME`` has no zone and stays
  naive: it is replicated as stored.
- ``BIT(n)``: bytes, big-endian; becomes the unsigned integer they spell.
- ``SET``: the server sends ``"a,b"`` (a string with the SET flag); becomes
  the frozenset of its members (``""`` is the empty set).
- ``JSON``: text; becomes :class:`JsonText`, which each sink parses. MySQL
  reports the JSON type; MariaDB's JSON is a LONGTEXT alias that reports as
  text, so the mapping's ``json_columns`` names such columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymysql.constants import FIELD_TYPE, FLAG

from fanout.model.mapping import TableMapping


@dataclass(frozen=True)
class JsonText:
    """The text of a JSON column value, to be parsed by each sink into its own types."""

    text: str


def _flags(cursor: Any) -> list[int] | None:
    # pymysql keeps the column flags (SET, ENUM, UNSIGNED, ...) on the result's
    # field packets; the DB-API description has no place for them.
    fields = getattr(getattr(cursor, "_result", None), "fields", None)
    if not fields:
        return None
    return [int(getattr(f, "flags", 0)) for f in fields]


def _typed(value: Any, type_code: int, flags: int, is_json: bool) -> Any:
    if value is None:
        return None
    if is_json or type_code == FIELD_TYPE.JSON:
        return JsonText(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    if type_code == FIELD_TYPE.BIT and isinstance(value, bytes):
        return int.from_bytes(value, "big")
    if type_code == FIELD_TYPE.TIMESTAMP and isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC)
    if flags & FLAG.SET and isinstance(value, str):
        return frozenset(value.split(",")) if value else frozenset()
    return value


def typed_row(cursor: Any, values: Sequence[Any], mapping: TableMapping) -> dict[str, Any]:
    """The row the cursor just returned, as ``{column: value}`` with the conversions above."""
    description = cursor.description
    flags = _flags(cursor) or [0] * len(description)
    return {
        column[0]: _typed(value, column[1], flag, column[0] in mapping.json_columns)
        for column, value, flag in zip(description, values, flags, strict=True)
    }
