"""``fanout check``: the mapping, the installed triggers and the live schema compared; every drift with its fix.

A DBA's ALTER TABLE can break replication in two ways, and this names both before they bite (docs/runbook.md,
"Schema changes"):

* **writes**: a capture trigger that reads a column the table no longer has fails every write to it
  (``1054 Unknown column 'id' in 'NEW'``): a key column renamed or dropped, a column a document reads, a
  column a cascade trigger joins on;
* **replication**: a mapped table, column or key the fetcher reads is gone (every fetch of the table fails
  and its changes end in the dead-letter queue), a key changed its type or its columns, a captured action
  has no trigger, an installed trigger differs from what the mapping and the schema generate, or a foreign
  key cascades into captured rows without a cascade trigger (the engine fires no trigger for those rows:
  fanout.capture.cascades).

:func:`risks` lists, before any DDL, what each table's triggers and reads depend on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fanout.capture.cascades import cascade_triggers
from fanout.capture.composition_triggers import columns_read, feeding_triggers, feeds_by_table
from fanout.capture.foreign_keys import CHANGING_ACTIONS, ForeignKey, read_foreign_keys
from fanout.capture.migration_scripts import split_statements
from fanout.capture.trigger_columns import columns_read as trigger_reads
from fanout.capture.trigger_columns import created_trigger, missing_columns
from fanout.capture.trigger_sql import PARSER_ARN_PLACEHOLDER, TRIGGER_PREFIX, capture_trigger, trigger_name
from fanout.model.mapping import ACTIONS, Mappings, TableMapping

_VERSION = re.compile(r"_v(\d+)$")
_RING_ARN = re.compile(r"lambda_async\('[^']*'")
_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})
_STRING_TYPES = frozenset({"char", "varchar", "binary", "varbinary", "tinytext", "text", "mediumtext", "longtext"})
GENERATE = "run `fanout migrations generate` and deploy the new migration"


@dataclass(frozen=True)
class Drift:
    """One difference between what fanout expects and what the database holds, and what to do about it."""

    subject: str  # a table, table.column or trigger name
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.subject}: {self.problem}; fix: {self.fix}"


@dataclass
class LiveSchema:
    """What ``information_schema`` says about one schema."""

    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> data type
    primary_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    triggers: dict[str, tuple[str, str]] = field(default_factory=dict)  # fanout trigger -> (table, body)

    def column_sets(self) -> dict[str, set[str]]:
        return {table: set(columns) for table, columns in self.columns.items()}

    def has(self, table: str, column: str) -> bool:
        return column.lower() in {c.lower() for c in self.columns.get(table, {})}


def read_live_schema(conn: Any, schema: str) -> LiveSchema:
    live = LiveSchema(foreign_keys=read_foreign_keys(conn, schema))
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (schema,),
        )
        for table, column, data_type, _key in cur.fetchall():
            live.columns.setdefault(str(table), {})[str(column)] = str(data_type).lower()
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
            " WHERE TABLE_SCHEMA = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (schema,),
        )
        for table, column in cur.fetchall():
            live.primary_keys[str(table)] = (*live.primary_keys.get(str(table), ()), str(column))
        cur.execute(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM information_schema.TRIGGERS"
            " WHERE TRIGGER_SCHEMA = %s ORDER BY TRIGGER_NAME",
            (schema,),
        )
        for name, table, body in cur.fetchall():
            if str(name).startswith(TRIGGER_PREFIX):
                live.triggers[str(name)] = (str(table), str(body))
    return live


def columns_needed(mappings: Mappings) -> dict[str, dict[str, str]]:
    """table -> column -> why fanout reads it, for every mapped and feeding table."""
    needed: dict[str, dict[str, str]] = {}
    for mapping in mappings.tables.values():
        own = needed.setdefault(mapping.table, {})
        for column in mapping.columns or ():
            own.setdefault(column, "a mapped column")
        for column in mapping.json_columns:
            own.setdefault(column, "a json column")
        if mapping.composition is not None and mapping.composition.filter is not None:
            own.setdefault(mapping.composition.filter.column, "the document's filter")
        for column in mapping.key_columns:
            own[column] = "a key column"
    for table, feeds in feeds_by_table(mappings).items():
        for composition, feed in feeds:
            for column in columns_read(composition, feed):
                needed.setdefault(table, {}).setdefault(column, f"read for {composition.root}.{feed.relation}")
    return needed


def _key_type_matches(key_type: str, data_type: str) -> bool:
    return data_type in (_INT_TYPES if key_type == "int" else _STRING_TYPES)


def _table_drifts(mapping: TableMapping, live: LiveSchema) -> Iterable[Drift]:
    table = mapping.table
    actual = live.primary_keys.get(table, ())
    if {c.lower() for c in actual} != {c.lower() for c in mapping.key_columns}:
        yield Drift(
            table,
            f"primary key is ({', '.join(actual) or 'none'}) but the mapping's is ({', '.join(mapping.key_columns)})",
            f"change primary_key in the mapping, then {GENERATE}",
        )
    for key in mapping.primary_key:
        data_type = live.columns[table].get(key.column)
        if data_type is not None and not _key_type_matches(key.type, data_type):
            yield Drift(
                f"{table}.{key.column}",
                f"key column is {data_type} but the mapping types it {key.type}",
                "set its type in the mapping's primary_key and deploy",
            )


def _expected_triggers(mappings: Mappings, keys: list[ForeignKey], version: int) -> dict[str, tuple[str, str]]:
    """trigger name -> (table, CREATE TRIGGER statement) that the mapping and the schema's keys generate."""
    expected: dict[str, tuple[str, str]] = {}
    for mapping in mappings.tables.values():
        for action in ACTIONS:
            if action in mapping.capture:
                expected[trigger_name(mapping.table, action, version)] = (
                    mapping.table,
                    capture_trigger(mapping, action, version),
                )
    for table, _action, name, sql, _summary in feeding_triggers(mappings, version):
        expected[name] = (table, sql)
    for table, _event, name, sql, _summary in cascade_triggers(mappings, keys, version):
        expected[name] = (table, sql)
    return expected


def _body(statement: str) -> str:
    """A trigger's body as compared: the ring's ARN as the placeholder, each line stripped."""
    body = _RING_ARN.sub(f"lambda_async('{PARSER_ARN_PLACEHOLDER}'", statement)
    return "\n".join(line.strip() for line in body.strip().rstrip(";").splitlines())


def _changes_rows(key: ForeignKey) -> bool:
    return key.on_delete in CHANGING_ACTIONS or key.on_update in CHANGING_ACTIONS


def _trigger_drifts(mappings: Mappings, live: LiveSchema) -> Iterable[Drift]:
    versions = [int(m.group(1)) for name in live.triggers if (m := _VERSION.search(name))]
    if not versions:
        yield Drift("triggers", "no fanout trigger is installed", "deploy (or `fanout migrate`) to install them")
        return
    version = max(versions)
    expected = _expected_triggers(mappings, live.foreign_keys, version)
    cascading: dict[str, list[str]] = {}
    for key in live.foreign_keys:
        if _changes_rows(key):
            cascading.setdefault(key.referenced_table, []).append(f"{key.name} ({key.describe()})")
    for name, (table, sql) in sorted(expected.items()):
        if name not in live.triggers:
            if "_cascade_before_" in name:
                yield Drift(
                    name,
                    f"missing: foreign keys {'; '.join(cascading[table])} change captured rows, for which the engine"
                    " fires no trigger",
                    GENERATE,
                )
            else:
                yield Drift(name, f"missing on {table}: its changes are not captured", GENERATE)
            continue
        [statement] = split_statements(sql)
        created = created_trigger(statement)
        assert created is not None
        if _body(created[2]) != _body(live.triggers[name][1]):
            yield Drift(name, "differs from what the mapping and the schema generate", GENERATE)
    columns = live.column_sets()
    for name, (table, body) in sorted(live.triggers.items()):
        if name not in expected and _VERSION.search(name):
            yield Drift(name, f"installed on {table} but not generated by the mapping and the schema", GENERATE)
        if missing := missing_columns(table, body, columns):
            yield Drift(
                name,
                f"reads {', '.join(missing)}, which no longer exist: every write to {table} that fires it fails (1054)",
                f"restore the column, or change the mapping and {GENERATE}",
            )


def check_schema(mappings: Mappings, live: LiveSchema) -> list[Drift]:
    """Every drift between the mapping, the installed triggers and the live schema; [] when all agree."""
    drifts: list[Drift] = []
    for table, needed in sorted(columns_needed(mappings).items()):
        if table not in live.columns:
            drifts.append(Drift(table, "table does not exist", "restore it, or remove it from the mapping"))
            continue
        for column, why in sorted(needed.items()):
            if not live.has(table, column):
                drifts.append(
                    Drift(
                        f"{table}.{column}",
                        f"column does not exist ({why}): every fetch of {table} fails",
                        f"restore it, or change the mapping and {GENERATE}",
                    )
                )
    for mapping in sorted(mappings.tables.values(), key=lambda m: m.table):
        if mapping.table in live.columns:
            drifts += _table_drifts(mapping, live)
    drifts += _trigger_drifts(mappings, live)
    return drifts


def risks(mappings: Mappings, live: LiveSchema) -> list[str]:
    """Per table, the columns whose RENAME or DROP would fail its writes (the triggers read them) or its fetches."""
    lines = []
    read_by_triggers: dict[str, set[str]] = {}
    for table, body in live.triggers.values():
        for read_table, columns in trigger_reads(table, body).items():
            read_by_triggers.setdefault(read_table, set()).update(columns)
    needed = columns_needed(mappings)
    for table in sorted(set(read_by_triggers) | set(needed)):
        writes = sorted(read_by_triggers.get(table, ()))
        fetches = sorted(set(needed.get(table, ())) - set(writes))
        parts = []
        if writes:
            parts.append(f"renaming or dropping {', '.join(writes)} fails every write (the triggers read them)")
        if fetches:
            parts.append(f"renaming or dropping {', '.join(fetches)} fails every fetch (the mapping reads them)")
        lines.append(f"{table}: {'; '.join(parts)}")
    return lines
