"""The table mapping: which source tables are replicated, and how.

One JSON file (``tables.json`` beside this module, or the path in
``FANOUT_MAPPING_FILE``) declares every replicated table. It is validated when
loaded; an error names the table and the field. SQL identifiers used anywhere
in the data path come only from this validated mapping, never from a payload.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ACTIONS = ("insert", "update", "delete")
KEY_TYPES = ("int", "string")
# Item attributes the DynamoDB sink owns; a replicated column may not use them.
RESERVED_ITEM_ATTRIBUTES = frozenset({"pk", "_table", "_version", "_deleted", "_ttl"})

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,254}$")

DEFAULT_MAPPING_FILE = Path(__file__).with_name("tables.json")


class MappingError(ValueError):
    """The mapping file is invalid; the message names the table and field."""


@dataclass(frozen=True)
class KeyColumn:
    column: str
    type: str  # "int" or "string"


@dataclass(frozen=True)
class TableMapping:
    table: str
    primary_key: tuple[KeyColumn, ...]
    capture: frozenset[str]
    columns: tuple[str, ...] | None  # None: every column of the row
    opensearch_enabled: bool
    opensearch_index: str
    dynamodb_enabled: bool

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(k.column for k in self.primary_key)


@dataclass(frozen=True)
class Mappings:
    tables: Mapping[str, TableMapping]

    def get(self, table: str) -> TableMapping | None:
        return self.tables.get(table)


def _fail(table: str, field: str, message: str) -> MappingError:
    return MappingError(f"table mapping for {table!r}, field {field!r}: {message}")


def _identifier(table: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise _fail(table, field, f"{value!r} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_$]*, at most 64)")
    return value


def _parse_table(table: str, spec: Any) -> TableMapping:
    _identifier(table, "<table name>", table)
    if not isinstance(spec, dict):
        raise _fail(table, "<table>", "must be an object")
    known = {"primary_key", "capture", "columns", "opensearch", "dynamodb"}
    unknown = set(spec) - known
    if unknown:
        raise _fail(table, sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(known))})")

    raw_key = spec.get("primary_key")
    if not isinstance(raw_key, list) or not raw_key:
        raise _fail(table, "primary_key", "must be a non-empty list of {column, type}")
    key: list[KeyColumn] = []
    for i, item in enumerate(raw_key):
        field = f"primary_key[{i}]"
        if not isinstance(item, dict):
            raise _fail(table, field, "must be an object {column, type}")
        column = _identifier(table, f"{field}.column", item.get("column"))
        key_type = item.get("type", "int")
        if key_type not in KEY_TYPES:
            raise _fail(table, f"{field}.type", f"{key_type!r} is not one of {KEY_TYPES}")
        key.append(KeyColumn(column, key_type))
    if len({k.column for k in key}) != len(key):
        raise _fail(table, "primary_key", "lists a column twice")

    capture = spec.get("capture", list(ACTIONS))
    if not isinstance(capture, list) or not capture or any(a not in ACTIONS for a in capture):
        raise _fail(table, "capture", f"must be a non-empty list drawn from {ACTIONS}, got {capture!r}")

    columns = spec.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not columns:
            raise _fail(table, "columns", "must be a non-empty list of column names (or absent for all)")
        columns = tuple(_identifier(table, f"columns[{i}]", c) for i, c in enumerate(columns))
        missing = [k.column for k in key if k.column not in columns]
        if missing:
            raise _fail(table, "columns", f"must include the primary key column(s) {missing}")

    opensearch = spec.get("opensearch", {})
    dynamodb = spec.get("dynamodb", {})
    sink_fields = {"opensearch": {"enabled", "index"}, "dynamodb": {"enabled"}}
    for name, sink in (("opensearch", opensearch), ("dynamodb", dynamodb)):
        if not isinstance(sink, dict):
            raise _fail(table, name, "must be an object")
        misspelt = sorted(set(sink) - sink_fields[name])
        if misspelt:
            known_here = ", ".join(sorted(sink_fields[name]))
            raise _fail(table, f"{name}.{misspelt[0]}", f"unknown field (known: {known_here})")
    index = opensearch.get("index", table.lower())
    if opensearch.get("enabled", True) and (not isinstance(index, str) or not _INDEX_NAME.match(index)):
        raise _fail(table, "opensearch.index", f"{index!r} is not a valid OpenSearch index name")
    for name, sink in (("opensearch", opensearch), ("dynamodb", dynamodb)):
        if not isinstance(sink.get("enabled", True), bool):
            raise _fail(table, f"{name}.enabled", "must be true or false")
    clashing = RESERVED_ITEM_ATTRIBUTES.intersection(columns or ())
    if dynamodb.get("enabled", True) and clashing:
        raise _fail(table, "columns", f"{sorted(clashing)} are reserved DynamoDB item attributes")

    return TableMapping(
        table=table,
        primary_key=tuple(key),
        capture=frozenset(capture),
        columns=columns,
        opensearch_enabled=opensearch.get("enabled", True),
        opensearch_index=index,
        dynamodb_enabled=dynamodb.get("enabled", True),
    )


def parse_mappings(document: Any) -> Mappings:
    """Validate a parsed mapping document ({"tables": {name: spec}})."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), dict):
        raise MappingError('the mapping must be an object with a "tables" object')
    if not document["tables"]:
        raise MappingError("the mapping declares no tables")
    return Mappings({name: _parse_table(name, spec) for name, spec in document["tables"].items()})


def load_mappings(path: str | os.PathLike[str] | None = None) -> Mappings:
    """Load and validate the mapping file (``FANOUT_MAPPING_FILE`` or the bundled one)."""
    path = Path(path or os.environ.get("FANOUT_MAPPING_FILE") or DEFAULT_MAPPING_FILE)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"cannot read table mapping {path}: {exc}") from exc
    except ValueError as exc:
        raise MappingError(f"table mapping {path} is not valid JSON: {exc}") from exc
    return parse_mappings(document)


@lru_cache(maxsize=1)
def default_mappings() -> Mappings:
    """The mapping for this execution environment, loaded once."""
    return load_mappings()
