"""The source schema's foreign keys, as ``information_schema`` describes them.

Read by ``fanout migrations generate`` (the cascade triggers, :mod:`fanout.capture.cascades`) and by
``fanout check`` (cascades no installed trigger covers). Only the engine's referential actions matter
here: ``CASCADE`` and ``SET NULL`` change the dependent rows without firing their triggers;
``RESTRICT`` and ``NO ACTION`` change nothing (the statement fails instead).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CHANGING_ACTIONS = ("CASCADE", "SET NULL")  # InnoDB rejects SET DEFAULT


@dataclass(frozen=True)
class ForeignKey:
    """``table(columns)`` references ``referenced_table(referenced_columns)``, pairwise in ordinal order."""

    name: str
    table: str
    columns: tuple[str, ...]
    referenced_table: str
    referenced_columns: tuple[str, ...]
    on_delete: str  # CASCADE, SET NULL, RESTRICT, NO ACTION
    on_update: str

    def action(self, event: str) -> str:
        """What the engine does to this key's rows when a referenced row is deleted or updated."""
        return self.on_delete if event == "delete" else self.on_update

    def describe(self) -> str:
        columns, referenced = ", ".join(self.columns), ", ".join(self.referenced_columns)
        return (
            f"{self.table}({columns}) -> {self.referenced_table}({referenced})"
            f" ON DELETE {self.on_delete} ON UPDATE {self.on_update}"
        )


def foreign_keys_from_rows(rows: Iterable[tuple[Any, ...]]) -> list[ForeignKey]:
    """Foreign keys from (name, table, column, referenced table, referenced column, ordinal, on delete,
    on update) rows, in (table, name) order."""
    parts: dict[tuple[str, str], list[tuple[int, str, str]]] = defaultdict(list)
    heads: dict[tuple[str, str], tuple[str, str, str]] = {}
    for name, table, column, referenced_table, referenced_column, ordinal, on_delete, on_update in rows:
        key = (str(table), str(name))
        parts[key].append((int(ordinal), str(column), str(referenced_column)))
        heads[key] = (str(referenced_table), str(on_delete).upper(), str(on_update).upper())
    keys: list[ForeignKey] = []
    for (table, name), columns in sorted(parts.items()):
        referenced_table, on_delete, on_update = heads[(table, name)]
        ordered = sorted(columns)
        keys.append(
            ForeignKey(
                name=name,
                table=table,
                columns=tuple(c for _, c, _ in ordered),
                referenced_table=referenced_table,
                referenced_columns=tuple(r for _, _, r in ordered),
                on_delete=on_delete,
                on_update=on_update,
            )
        )
    return keys


def read_foreign_keys(conn: Any, schema: str) -> list[ForeignKey]:
    """The foreign keys among the tables of ``schema`` (a key to another schema cannot feed a document here)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT k.CONSTRAINT_NAME, k.TABLE_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME,"
            " k.REFERENCED_COLUMN_NAME, k.ORDINAL_POSITION, r.DELETE_RULE, r.UPDATE_RULE"
            " FROM information_schema.KEY_COLUMN_USAGE AS k"
            " JOIN information_schema.REFERENTIAL_CONSTRAINTS AS r"
            " ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME"
            " AND r.TABLE_NAME = k.TABLE_NAME"
            " WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_SCHEMA = %s",
            (schema, schema),
        )
        return foreign_keys_from_rows(cur.fetchall())
