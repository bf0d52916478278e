"""The rows the source reads return, and the typing of their values (the reader, the composed read, reconcile
and verify share them).

What a value read from MySQL becomes before it is mapped to a sink: pymysql
decodes most column types to an unambiguous Python value (int, Decimal, float,
str, bytes, date, datetime, timedelta). Four need the column's metadata, which
only the reader has, so it converts them here (:func:`typed_row`), once, for the
fetcher, reconcile and :mod:`fanout.operations.verify` alike:

- ``TIMESTAMP``: pymysql returns a naive datetime in the session time zone.
  The session runs with ``time_zone = '+00:00'`` (:mod:`fanout.source.connection`), so the
  value is UTC and is made zone-aware. ``DATETIME`` has no zone and stays
  naive: it is replicated as stored.
- ``BIT(n)``: bytes, big-endian; becomes the unsigned integer they spell.
- ``SET``: the server sends ``"a,b"`` (a string with the SET flag); becomes
  the frozenset of its members (``""`` is the empty set).
- ``JSON``: text; becomes :class:`JsonText`, which each sink parses. A JSON
  column reports its type, so it is detected; the mapping's ``json_columns``
  names text columns that hold JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymysql.constants import FIELD_TYPE, FLAG

from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.source.sql import quote_identifier, selected_columns

# Microseconds since the epoch, exact (DECIMAL arithmetic), zone-independent.
CLOCK_SQL = "SELECT CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS UNSIGNED)"
RETRYABLE_MYSQL_ERRORS = {1205: "lock wait timeout", 1213: "deadlock"}
# The shared-lock clauses (MySQL 8.0 / Aurora MySQL 3). A waiting read waits out a writer, bounded by
# innodb_lock_wait_timeout (then 1205); SKIP LOCKED leaves out rows a writer holds; NOWAIT fails at once
# with 3572 (ER_LOCK_NOWAIT) on a row a writer holds.
SHARE = "FOR SHARE"
SHARE_SKIP_LOCKED = "FOR SHARE SKIP LOCKED"
SHARE_NOWAIT = "FOR SHARE NOWAIT"


class SourceReadError(RuntimeError):
    """The row could not be read now; the change must be retried."""


@dataclass(frozen=True)
class RowState:
    """The committed state of one row at ``version`` (None: the row does not exist)."""

    row: dict[str, Any] | None
    version: int

    @property
    def exists(self) -> bool:
        return self.row is not None


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


def select_row_sql(mapping: TableMapping, lock: str = SHARE) -> str:
    """One row by its key, with ``lock`` (the waiting shared lock; "" for a plain read)."""
    where = " AND ".join(f"{quote_identifier(c)} = %s" for c in mapping.key_columns)
    # Identifiers come from the validated mapping; key values are bound parameters.
    table = quote_identifier(mapping.table)
    sql = f"SELECT {selected_columns(mapping)} FROM {table} WHERE {where}"  # noqa: S608
    return f"{sql} {lock}" if lock else sql


def has_exact_key(row: dict[str, Any], change: Change) -> bool:
    """Whether the row's stored key values are exactly the change's (not merely equal under a collation)."""
    for column, value in change.key:
        stored = row.get(column)
        if isinstance(stored, (str, int)) and not isinstance(stored, bool) and stored != value:
            return False
    return True
