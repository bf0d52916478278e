"""Walking a table in primary-key order with keyset pages (never OFFSET), and turning its keys into changes.

A page is::

    SELECT <key columns> FROM t WHERE (<key>) > (<last key>) [AND range] [AND (filter)]
    ORDER BY <key> LIMIT <page>

a plain, non-locking read. Backfill pages keys this way, reconcile pages whole rows, and a
parallel backfill finds its split points with the same query and an ``OFFSET``. The keys a
page returns become :class:`~fanout.model.change.Change` objects validated as the fetcher
validates its input, so every walk goes through the live fetch path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fanout.model.change import Change, ChangeValidationError, KeyValue
from fanout.model.mapping import Mappings, TableMapping
from fanout.model.payloads import parse_change_message
from fanout.observability import log
from fanout.pipeline.rejects import Reject
from fanout.source.sql import column_list, quote_identifier

Key = tuple[KeyValue, ...]


class UnreplicableKey(ValueError):
    """A source key no sink can take (the fetcher's validation refuses it), met with no way to record it."""


@dataclass(frozen=True)
class KeyRange:
    """Optional bounds on the whole primary key (in key order): ``start`` and ``end`` inclusive, ``after``
    exclusive (instead of ``start``: the ranges of a parallel backfill begin after the previous one's end)."""

    start: Key | None = None
    end: Key | None = None
    after: Key | None = None


def after_key_sql(columns: Sequence[str], strict: bool = True) -> str:
    """``(a, b) > (%s, %s)`` spelled out (``a > %s OR (a = %s AND b > %s)``), which every range
    optimizer uses; its parameters are :func:`key_bound_params`."""
    return _key_bound_sql(columns, ">" if strict else ">=", ">")


def before_key_sql(columns: Sequence[str]) -> str:
    """``(a, b) <= (%s, %s)``, spelled out like :func:`after_key_sql`."""
    return _key_bound_sql(columns, "<=", "<")


def _key_bound_sql(columns: Sequence[str], last_op: str, other_op: str) -> str:
    clauses = []
    for i, column in enumerate(columns):
        op = last_op if i == len(columns) - 1 else other_op
        equal = [f"{quote_identifier(c)} = %s" for c in columns[:i]]
        clauses.append("(" + " AND ".join([*equal, f"{quote_identifier(column)} {op} %s"]) + ")")
    return "(" + " OR ".join(clauses) + ")"


def key_bound_params(key: Key) -> list[Any]:
    params: list[Any] = []
    for i in range(len(key)):
        params.extend(key[: i + 1])
    return params


def key_from_list(mapping: TableMapping, values: list[Any] | None) -> Key | None:
    """A key stored as a JSON list, typed by the mapping's key columns."""
    if values is None:
        return None
    return tuple(int(v) if k.type == "int" else str(v) for k, v in zip(mapping.primary_key, values, strict=True))


def page_query(
    mapping: TableMapping,
    after: Key | None,
    limit: int,
    *,
    bounds: KeyRange = KeyRange(),
    where: str | None = None,
    where_params: Sequence[Any] = (),
    select: str | None = None,
    offset: int = 0,
) -> tuple[str, list[Any]]:
    """The keyset page after ``after`` (no lock) and its parameters: the key columns, or ``select``.

    ``where`` is the operator's filter (trusted SQL text, its values in ``where_params``). Pages
    never use ``offset``; splitting a table into ranges does (fanout.operations.backfill_parallel).
    """
    columns = mapping.key_columns
    clauses: list[str] = []
    params: list[Any] = []
    if after is not None:
        clauses.append(after_key_sql(columns))
        params += key_bound_params(after)
    elif bounds.after is not None:
        clauses.append(after_key_sql(columns))
        params += key_bound_params(bounds.after)
    elif bounds.start is not None:
        clauses.append(after_key_sql(columns, strict=False))
        params += key_bound_params(bounds.start)
    if bounds.end is not None:
        clauses.append(before_key_sql(columns))
        params += key_bound_params(bounds.end)
    if where:
        clauses.append(f"({where})")
        params += list(where_params)
    listed = select or column_list(columns)
    sql = f"SELECT {listed} FROM {quote_identifier(mapping.table)}"  # noqa: S608 - identifiers from the mapping
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY {column_list(columns)} LIMIT {int(limit)}"
    if offset:
        sql += f" OFFSET {int(offset)}"
    return sql, params


def estimated_rows(conn: Any, mapping: TableMapping) -> int | None:
    """InnoDB's row estimate (no scan): good enough for an ETA or a sample's odds."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (mapping.table,),
        )
        found = cur.fetchone()
    return int(found[0]) if found and found[0] is not None else None


def key_change(mapping: TableMapping, key: Key, changed_at_us: int = 1, correlation_id: str = "") -> Change:
    """The change that makes the fetch path re-read the row with this key (an update: the re-read decides)."""
    key_values = tuple(zip(mapping.key_columns, key, strict=True))
    return Change(mapping.table, key_values, "update", changed_at_us, correlation_id)


def key_changes(
    mapping: TableMapping, mappings: Mappings, keys: Sequence[Key], correlation_id: str, reject: Reject | None
) -> tuple[list[Change], int]:
    """Changes for source keys, validated as the fetcher validates its input (a key no sink can take is
    recorded with ``reject``, not retried; without ``reject`` it raises :class:`UnreplicableKey`)."""
    now_us = int(time.time() * 1_000_000)
    changes: list[Change] = []
    rejected = 0
    for key in keys:
        message = key_change(mapping, key, now_us, correlation_id).to_message()
        try:
            changes.append(parse_change_message(message, mappings))
        except ChangeValidationError as exc:
            rejected += 1
            log(logging.WARNING, "backfill key rejected", table=mapping.table, key=str(key), reason=str(exc))
            if reject is None:
                raise UnreplicableKey(f"{mapping.table} key {key!r} cannot be replicated: {exc}") from exc
            reject(f"backfill: {exc}", message, correlation_id)
    return changes, rejected
