"""Capture of rows the engine changes through foreign-key actions: the cascade triggers.

InnoDB fires no trigger for a row it deletes or updates because of ``ON DELETE CASCADE``, ``ON DELETE
SET NULL``, ``ON UPDATE CASCADE`` or ``ON UPDATE SET NULL`` (nor does the binary log show such a row).
So for every foreign key whose action changes rows of a captured table (mapped, or feeding a composed
document), the REFERENCED table gets a ``BEFORE DELETE`` / ``BEFORE UPDATE`` trigger,
``fanout_<table>_cascade_before_<action>_v<version>``. Before the engine cascades, the dependent rows are
still there: per foreign key (and per level of a cascade chain, joined through the levels above it) one
``INSERT ... SELECT`` logs every dependent row with exactly the payload the dependent table's own trigger
would have written (built by the same functions, with the dependent row's values in place of NEW and
OLD), so the parser and the fetcher see an ordinary change. A cascade of N rows costs the statement one
``INSERT ... SELECT`` of N rows per level, never a call per row; the ring stays once per statement.

A chain follows the engine: a deleted row's own dependents are deleted or set to NULL in turn, an updated
key's dependents are updated or set to NULL; the engine stops at 15 levels (error 3008) and an update
cascade never comes back to a table it has already updated (it acts as RESTRICT), and so does the chain.

The dependent rows are read ``FOR UPDATE``: the engine is about to lock them exclusively for the cascade
anyway, and a shared lock first would let two cascades reaching the same row (a link row of two deleted
parents) deadlock on the upgrade. A BEFORE trigger runs before the statement is sure to succeed; that is
harmless, since the log rows are in the same transaction and go with it on failure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fanout.capture.composition_triggers import columns_read, feeding_payload, feeds_by_table
from fanout.capture.foreign_keys import CHANGING_ACTIONS, ForeignKey
from fanout.capture.names import CHANGE_LOG_TABLE
from fanout.capture.trigger_sql import KILL_SWITCH, TRIGGER_PREFIX, payload_fields, ring_sql
from fanout.model.mapping import Mappings
from fanout.model.mapping_fields import IDENTIFIER
from fanout.source.sql import quote_identifier

MAX_CASCADE_DEPTH = 15  # InnoDB's limit: a deeper cascade fails the statement (error 3008)
CASCADE_SUFFIX = "_cascade"
_MAX_IDENTIFIER = 64
_INDENT = "    "
_ROW_VALUE = re.compile(r"\b(NEW|OLD)\.(`(?:[^`]|``)+`)")

Value = Callable[[str], str]  # a column of the dependent row -> the SQL of its value


def cascade_trigger_name(table: str, event: str, version: int) -> str:
    """``fanout_<table>_cascade_before_<event>_v<version>``, shortened with a hash of the table if too long."""
    suffix = f"{CASCADE_SUFFIX}_before_{event}_v{version:03d}"
    name = f"{TRIGGER_PREFIX}{table}{suffix}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode("utf-8")).hexdigest()[:8]
    room = _MAX_IDENTIFIER - len(TRIGGER_PREFIX) - len(suffix) - len(digest) - 1
    return f"{TRIGGER_PREFIX}{table[:room]}_{digest}{suffix}"


@dataclass(frozen=True)
class _Level:
    """The rows one step of a cascade changes: how they are reached, and their values before and after."""

    table: str
    alias: str
    joins: tuple[str, ...]  # FROM ... JOIN ... lines, the first level first
    where: str
    event: str  # "delete" or "update"
    old: Value
    new: Value
    changed: frozenset[str]  # the columns the cascade changes (update)
    updated_tables: frozenset[str]


def _column(alias: str) -> Value:
    return lambda column: f"{alias}.{quote_identifier(column)}"


def _dependent_level(parent: _Level | None, key: ForeignKey, event: str, depth: int) -> _Level | None:
    """The rows ``key`` makes the engine change when its referenced rows see ``event``; None if none."""
    action = key.action(event)
    if action not in CHANGING_ACTIONS:
        return None
    alias = f"fanout_d{depth}"
    own = _column(alias)
    parent_old: Value = parent.old if parent else (lambda c: f"OLD.{quote_identifier(c)}")
    parent_new: Value = parent.new if parent else (lambda c: f"NEW.{quote_identifier(c)}")
    pairs = zip(key.columns, key.referenced_columns, strict=True)
    match = " AND ".join(f"{parent_old(r)} = {own(c)}" if parent else f"{own(c)} = {parent_old(r)}" for c, r in pairs)
    table = quote_identifier(key.table)
    joins: tuple[str, ...]
    if parent is None:
        joins, where = (f"FROM {table} AS {alias}",), match
    else:
        joins, where = (*parent.joins, f"INNER JOIN {table} AS {alias} ON {match}"), parent.where
    if event == "delete" and action == "CASCADE":
        return _Level(key.table, alias, joins, where, "delete", own, own, frozenset(), frozenset())
    becomes = dict(zip(key.columns, key.referenced_columns, strict=True))
    if action == "CASCADE":  # an updated key: the dependent columns take the referenced row's new values

        def new(column: str) -> str:
            return parent_new(becomes[column]) if column in becomes else own(column)
    else:

        def new(column: str) -> str:
            return "NULL" if column in becomes else own(column)

    updated = (parent.updated_tables if parent else frozenset({key.referenced_table})) | {key.table}
    return _Level(key.table, alias, joins, where, "update", own, new, frozenset(key.columns), updated)


def _levels(keys: Sequence[ForeignKey], top: ForeignKey, event: str) -> list[_Level]:
    """Every level of the cascade ``top`` starts when its referenced row sees ``event``, depth first."""
    out: list[_Level] = []

    def walk(parent: _Level | None, key: ForeignKey, depth: int) -> None:
        if depth > MAX_CASCADE_DEPTH:
            return
        updated = parent.updated_tables if parent else frozenset({key.referenced_table} if event == "update" else ())
        if (parent is None or parent.event == "update") and key.table in updated:
            return
        level = _dependent_level(parent, key, parent.event if parent else event, depth)
        if level is None:
            return
        out.append(level)
        for below in keys:
            if below.referenced_table != level.table:
                continue
            if level.event == "update" and not set(below.referenced_columns) & level.changed:
                continue  # its referenced columns keep their values: the engine does nothing
            walk(level, below, depth + 1)

    walk(None, top, 1)
    return out


def _rewrite(lines: Sequence[str], level: _Level) -> list[str]:
    """A dependent table's payload lines, with its row's values in place of its trigger's NEW and OLD."""

    def value(found: re.Match[str]) -> str:
        column = found.group(2)[1:-1].replace("``", "`")
        return level.new(column) if found.group(1) == "NEW" else level.old(column)

    return [_ROW_VALUE.sub(value, line) for line in lines]


def _inserts(mappings: Mappings, level: _Level) -> list[list[str]]:
    """The payloads the level's rows log: as the table's own capture trigger, and as its feeding trigger."""
    payloads: list[list[str]] = []
    mapping = mappings.tables.get(level.table)
    if mapping is not None and level.event in mapping.capture:
        payloads.append(_rewrite(payload_fields(mapping, level.event), level))
    feeds = feeds_by_table(mappings).get(level.table)
    if feeds is not None:
        read = {column for c, f in feeds for column in columns_read(c, f)}
        if level.event == "delete" or level.changed & read:
            payloads.append(_rewrite(feeding_payload(level.table, feeds, level.event), level))
    return payloads


def _insert_sql(payload: Sequence[str], level: _Level, depth: int) -> str:
    i0, i1, i2 = (_INDENT * (depth + n) for n in range(3))
    body = f"\n{i2}".join(payload)
    from_lines = f"\n{i0}".join(level.joins)
    return (
        f"{i0}INSERT INTO {CHANGE_LOG_TABLE} (payload)\n"  # noqa: S608 - identifiers from the schema, quoted
        f"{i0}SELECT\n"
        f"{i1}JSON_OBJECT(\n"
        f"{i2}{body}\n"
        f"{i1})\n"
        f"{i0}{from_lines}\n"
        f"{i0}WHERE {level.where}\n"
        f"{i0}FOR UPDATE;\n"
        f"{i0}SET fanout_logged = fanout_logged + ROW_COUNT();\n"
    )


def _changed(key: ForeignKey) -> str:
    """True when the update changes a referenced column, byte for byte (the engine cascades on any change)."""
    return " OR ".join(
        f"NOT (CAST(OLD.{quote_identifier(c)} AS BINARY) <=> CAST(NEW.{quote_identifier(c)} AS BINARY))"
        for c in key.referenced_columns
    )


def cascade_triggers(
    mappings: Mappings, foreign_keys: Sequence[ForeignKey], version: int
) -> list[tuple[str, str, str, str, str]]:
    """(table, event, trigger name, CREATE TRIGGER statement, summary lines) for every referenced table whose
    deletes or updates cascade into captured rows; tables in name order, then delete, update."""
    for key in foreign_keys:  # names go into SQL text: only what a mapping could name (quoted all the same)
        for name in (key.table, key.referenced_table, *key.columns, *key.referenced_columns):
            if not IDENTIFIER.match(name):
                raise ValueError(f"foreign key {key.name!r} names {name!r}, which is not a plain identifier")
    out: list[tuple[str, str, str, str, str]] = []
    for table in sorted({key.referenced_table for key in foreign_keys}):
        for event in ("delete", "update"):
            blocks: list[str] = []
            covered: list[str] = []
            for key in foreign_keys:
                if key.referenced_table != table:
                    continue
                statements = [
                    _insert_sql(payload, level, 2 if event == "delete" else 3)
                    for level in _levels(foreign_keys, key, event)
                    for payload in _inserts(mappings, level)
                ]
                if not statements:
                    continue
                covered.append(f"--     {key.describe()}")
                if event == "delete":
                    blocks.append("".join(statements))
                else:
                    blocks.append(f"{_INDENT * 2}IF {_changed(key)} THEN\n{''.join(statements)}{_INDENT * 2}END IF;\n")
            if not blocks:
                continue
            name = cascade_trigger_name(table, event, version)
            summary = f"--   {table}, before {event} (the engine fires no trigger for the rows it changes):\n"
            out.append((table, event, name, _trigger(name, table, event, blocks), summary + "\n".join(covered)))
    return out


def _trigger(name: str, table: str, event: str, blocks: Sequence[str]) -> str:
    i1 = _INDENT
    return (
        f"CREATE TRIGGER {name} BEFORE {event.upper()} ON {quote_identifier(table)} FOR EACH ROW\n"
        f"BEGIN\n"
        f"{i1}DECLARE fanout_logged BIGINT DEFAULT 0;\n"
        f"{i1}IF COALESCE({KILL_SWITCH}, 0) <> 1 THEN\n"
        f"{''.join(blocks)}"
        f"{_INDENT * 2}IF fanout_logged > 0 THEN\n"
        f"{ring_sql(table, 3)}"
        f"{_INDENT * 2}END IF;\n"
        f"{i1}END IF;\n"
        f"END;"
    )
