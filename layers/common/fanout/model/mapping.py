"""The table mapping: which source tables are replicated, and how.

One JSON file (``tables.json`` beside this package, or the path in ``FANOUT_MAPPING_FILE``) declares every
replicated table. Its format is the JSON Schema ``tables.schema.json`` beside it (generated from
:mod:`fanout.model.mapping_schema`; every field described in README.md, "Replicating a table"). It is validated
when loaded: first against that schema, then here for what a schema cannot say; an error names the table and the
field. SQL identifiers used anywhere in the data path come only from this validated mapping, never from a payload.
The result is typed: a :class:`TableMapping` per table, with its sinks' settings in :class:`OpenSearchSection`
and :class:`DynamoDBSection`.

Key formats (``document_id``, ``partition_key.value``, ``sort_key.value``) are
templates of the key-format language (:mod:`fanout.model.key_format`): ``{<key column>}``,
``{key}`` (all key values joined by ``|``) and ``{table}``, each value percent-encoded. A
format must name every key column (``{key}`` names them all).

JSON columns: a column of MySQL's JSON type reports its type, so it is detected
and needs no entry. ``json_columns`` is for text columns (TEXT, VARCHAR, ...)
that hold JSON: their values are parsed like a JSON column's. The JSON type
stores a number as a double (or a 64-bit integer), so a JSON number with more
digits than a double keeps only a double's; a number that must keep every digit
belongs in a DECIMAL column, or in a text column listed here.

DynamoDB tables: ``table`` null writes to the ReplicaTable the stack creates
(partition key ``pk``, no sort key). Another table must be granted to the
fetcher at deploy time (template parameter ``ExtraReplicaTableArns``); the
fetcher refuses at cold start to use a table it was not granted. Mappings that
share a DynamoDB table must start their partition key with ``{table}`` and a
separator, so their keys cannot collide.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from fanout.model.composition import Composition, parse_composition
from fanout.model.key_format import ENCODED_ALPHABET, KeyFormat, covered_key_columns, parse_key_format
from fanout.model.mapping_fields import (
    FieldError,
    check_output_names,
    column_list,
    renames,
)
from fanout.model.mapping_schema import ACTIONS as ACTIONS  # the actions a trigger captures: named with the mapping
from fanout.model.mapping_schema import (
    ATTRIBUTE_NAME,
    FIELD_NAME,
    INDEX_NAME,
    schema_problem,
)

# Where a document or item keeps its full key when its id is a bounded one (fanout.model.sink_keys.bounded_sink_id).
FULL_KEY_FIELD = "_fanout_key"
# Item attributes the DynamoDB sink owns (besides the key attributes); a replicated column may not use them.
BOOKKEEPING_ATTRIBUTES = frozenset({"_table", "_version", "_deleted", "_ttl", FULL_KEY_FIELD})
DEFAULT_PARTITION_ATTRIBUTE = "pk"
RESERVED_ITEM_ATTRIBUTES = BOOKKEEPING_ATTRIBUTES | {DEFAULT_PARTITION_ATTRIBUTE}  # in the default table

_INDEX_NAME = re.compile(INDEX_NAME)
# A field name for OpenSearch: no dots (they are read as object paths), not a metadata field.
_FIELD_NAME = re.compile(FIELD_NAME)
OPENSEARCH_METADATA_FIELDS = frozenset(
    {
        "_id", "_index", "_source", "_routing", "_field_names", "_ignored", "_seq_no", "_primary_term",
        "_version", "_doc_count", "_type", "_size", "_meta", "_tier", "_nested_path", "_data_stream_timestamp",
    }
)  # fmt: skip
_ATTRIBUTE_NAME = re.compile(ATTRIBUTE_NAME)

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parent.parent / "tables.json"


class MappingError(ValueError):
    """The mapping file is invalid; the message names the table and field."""


@dataclass(frozen=True)
class KeyColumn:
    column: str
    type: str  # "int" or "string"


@dataclass(frozen=True)
class KeyAttribute:
    """A DynamoDB key attribute and the format of its value."""

    attribute: str
    value: KeyFormat


DEFAULT_DOCUMENT_ID = parse_key_format("{key}", {"key"}, MappingError)
DEFAULT_PARTITION_KEY = KeyAttribute(
    DEFAULT_PARTITION_ATTRIBUTE, parse_key_format("{table}#{key}", {"table", "key"}, MappingError)
)


@dataclass(frozen=True)
class OpenSearchSection:
    """A table's ``opensearch`` section, typed and with its defaults filled in."""

    enabled: bool
    index: str
    document_id: KeyFormat = DEFAULT_DOCUMENT_ID
    rename: tuple[tuple[str, str], ...] = ()  # (column, field)
    exclude: frozenset[str] = frozenset()
    binary: str = "base64"  # one of fanout.model.mapping_schema.OPENSEARCH_BINARY
    index_mappings: str = ""  # JSON text of the created index's mappings ("": dynamic mapping)
    index_settings: str = ""  # JSON text of the created index's settings ("": OpenSearch's defaults)

    def field(self, column: str) -> str:
        return dict(self.rename).get(column, column)


@dataclass(frozen=True)
class DynamoDBSection:
    """A table's ``dynamodb`` section, typed and with its defaults filled in."""

    enabled: bool
    table: str | None = None  # None: the stack's ReplicaTable (DYNAMODB_TABLE)
    partition_key: KeyAttribute = DEFAULT_PARTITION_KEY
    sort_key: KeyAttribute | None = None
    attributes: tuple[str, ...] | None = None  # None: every column read
    rename: tuple[tuple[str, str], ...] = ()  # (column, attribute)
    binary: str = "binary"  # one of fanout.model.mapping_schema.DYNAMODB_BINARY

    @property
    def key_attributes(self) -> frozenset[str]:
        names = {self.partition_key.attribute}
        if self.sort_key is not None:
            names.add(self.sort_key.attribute)
        return frozenset(names)

    @property
    def reserved_attributes(self) -> frozenset[str]:
        """Attribute names a column may not take in this table's items."""
        return BOOKKEEPING_ATTRIBUTES | self.key_attributes

    def attribute(self, column: str) -> str:
        return dict(self.rename).get(column, column)


@dataclass(frozen=True)
class TableMapping:
    """One table's entry. The sinks' settings are read as the typed sections ``opensearch`` and ``dynamodb``;
    the flat ``opensearch_*`` and ``dynamodb_*`` fields they are built from stay the constructor's arguments,
    so ``dataclasses.replace(mapping, opensearch_index=...)`` (tests, benchmarks) keeps both in step."""

    table: str
    primary_key: tuple[KeyColumn, ...]
    capture: frozenset[str]
    columns: tuple[str, ...] | None  # None: every column of the row
    opensearch_enabled: bool
    opensearch_index: str
    dynamodb_enabled: bool
    json_columns: frozenset[str] = frozenset()
    opensearch_document_id: KeyFormat = DEFAULT_DOCUMENT_ID
    opensearch_rename: tuple[tuple[str, str], ...] = ()  # (column, field)
    opensearch_exclude: frozenset[str] = frozenset()
    opensearch_binary: str = "base64"
    opensearch_index_mappings: str = ""  # JSON text of the created index's mappings ("": dynamic mapping)
    opensearch_index_settings: str = ""  # JSON text of the created index's settings ("": OpenSearch's defaults)
    dynamodb_table: str | None = None  # None: the stack's ReplicaTable (DYNAMODB_TABLE)
    dynamodb_partition_key: KeyAttribute = DEFAULT_PARTITION_KEY
    dynamodb_sort_key: KeyAttribute | None = None
    dynamodb_attributes: tuple[str, ...] | None = None  # None: every column read
    dynamodb_rename: tuple[tuple[str, str], ...] = ()  # (column, attribute)
    dynamodb_binary: str = "binary"
    composition: Composition | None = None  # a document built from several tables (fanout.model.composition)
    opensearch: OpenSearchSection = field(init=False, repr=False, compare=False)
    dynamodb: DynamoDBSection = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sections = {
            "opensearch": OpenSearchSection(
                enabled=self.opensearch_enabled,
                index=self.opensearch_index,
                document_id=self.opensearch_document_id,
                rename=self.opensearch_rename,
                exclude=self.opensearch_exclude,
                binary=self.opensearch_binary,
                index_mappings=self.opensearch_index_mappings,
                index_settings=self.opensearch_index_settings,
            ),
            "dynamodb": DynamoDBSection(
                enabled=self.dynamodb_enabled,
                table=self.dynamodb_table,
                partition_key=self.dynamodb_partition_key,
                sort_key=self.dynamodb_sort_key,
                attributes=self.dynamodb_attributes,
                rename=self.dynamodb_rename,
                binary=self.dynamodb_binary,
            ),
        }
        for name, section in sections.items():
            object.__setattr__(self, name, section)  # frozen: set once, here

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(k.column for k in self.primary_key)

    @property
    def dynamodb_key_attributes(self) -> frozenset[str]:
        return self.dynamodb.key_attributes

    @property
    def dynamodb_reserved_attributes(self) -> frozenset[str]:
        """Attribute names a column may not take in this table's items."""
        return self.dynamodb.reserved_attributes

    def opensearch_field(self, column: str) -> str:
        return self.opensearch.field(column)

    def dynamodb_attribute(self, column: str) -> str:
        return self.dynamodb.attribute(column)


@dataclass(frozen=True)
class Mappings:
    tables: Mapping[str, TableMapping]

    def get(self, table: str) -> TableMapping | None:
        return self.tables.get(table)

    def dynamodb_tables(self) -> frozenset[str]:
        """The DynamoDB tables named by the mapping (besides the default ReplicaTable)."""
        return frozenset(
            m.dynamodb_table for m in self.tables.values() if m.dynamodb_enabled and m.dynamodb_table is not None
        )


def _fail(table: str, field: str, message: str) -> MappingError:
    return MappingError(f"table mapping for {table!r}, field {field!r}: {message}")


def _key_attribute(field: str, value: Any, allowed: set[str], default: KeyAttribute | None) -> KeyAttribute | None:
    """A key attribute the schema has shaped (an object of attribute and value, or null)."""
    if value is None:
        return default
    attribute = value.get("attribute", default.attribute if default else None)
    if attribute in BOOKKEEPING_ATTRIBUTES:
        raise FieldError(f"{field}.attribute", f"{attribute!r} is an attribute the sink keeps for itself")
    text = value.get("value", default.value.text if default else None)
    key_format = parse_key_format(text, allowed, lambda m: FieldError(f"{field}.value", m))
    return KeyAttribute(attribute, key_format)


def _parse_table(table: str, spec: Any) -> TableMapping:
    try:
        return _parse_entry(table, spec)
    except FieldError as exc:  # the one place an error gets the table's name
        raise _fail(table, exc.field, exc.message) from None


def _parse_entry(table: str, spec: dict[str, Any]) -> TableMapping:
    """One table's entry, already of the schema's shape (tables.schema.json): what a schema cannot say."""
    key = [KeyColumn(item["column"], item.get("type", "int")) for item in spec["primary_key"]]
    key_columns = tuple(k.column for k in key)
    if len(set(key_columns)) != len(key):
        raise FieldError("primary_key", "lists a column twice")
    capture = spec.get("capture", list(ACTIONS))

    columns = spec.get("columns")
    if columns is not None:
        columns = tuple(columns)
        if len(set(columns)) != len(columns):
            raise FieldError("columns", "lists a column twice")
        missing = [c for c in key_columns if c not in columns]
        if missing:
            raise FieldError("columns", f"must include the primary key column(s) {missing}")
    json_columns = frozenset(column_list("json_columns", spec.get("json_columns", []), columns))
    opensearch = spec.get("opensearch", {})
    dynamodb = spec.get("dynamodb", {})

    # OpenSearch
    index = opensearch.get("index", table.lower())
    opensearch_on = opensearch.get("enabled", True)
    if opensearch_on and not _INDEX_NAME.match(index):  # a table name's lower case may still not be one
        raise FieldError("opensearch.index", f"{index!r} is not a valid OpenSearch index name")
    id_names = set(key_columns) | {"key", "table"}
    document_id = DEFAULT_DOCUMENT_ID
    if "document_id" in opensearch:
        document_id = parse_key_format(
            opensearch["document_id"], id_names, lambda m: FieldError("opensearch.document_id", m)
        )
        uncovered = set(key_columns) - covered_key_columns([document_id], key_columns)
        if uncovered:
            raise FieldError("opensearch.document_id", f"must name every key column; missing {sorted(uncovered)}")
    os_exclude = frozenset(column_list("opensearch.exclude", opensearch.get("exclude", []), columns))
    os_rename = renames(
        "opensearch.rename", opensearch.get("rename", {}), columns, _FIELD_NAME, "OpenSearch field name"
    )
    for column, target in os_rename:
        if target in OPENSEARCH_METADATA_FIELDS or target == FULL_KEY_FIELD:
            raise FieldError(f"opensearch.rename.{column}", f"{target!r} is an OpenSearch metadata field")
    for column, _ in os_rename:
        if column in os_exclude:
            raise FieldError(f"opensearch.rename.{column}", "renames a column that opensearch.exclude leaves out")
    os_binary = opensearch.get("binary", "base64")
    index_mappings = opensearch.get("index_mappings", {})
    index_settings = opensearch.get("index_settings", {})

    # DynamoDB
    dynamodb_on = dynamodb.get("enabled", True)
    ddb_table = dynamodb.get("table")
    partition = _key_attribute("dynamodb.partition_key", dynamodb.get("partition_key"), id_names, DEFAULT_PARTITION_KEY)
    assert partition is not None
    sort = _key_attribute("dynamodb.sort_key", dynamodb.get("sort_key"), id_names, None)
    if sort is not None and sort.attribute == partition.attribute:
        raise FieldError("dynamodb.sort_key.attribute", "must differ from the partition key attribute")
    formats = [partition.value] + ([sort.value] if sort else [])
    uncovered = set(key_columns) - covered_key_columns(formats, key_columns)
    if uncovered:
        missing = sorted(uncovered)
        raise FieldError("dynamodb.partition_key", f"the key formats must name every key column; missing {missing}")
    if ddb_table is None:
        if partition.attribute != DEFAULT_PARTITION_ATTRIBUTE or sort is not None:
            raise FieldError(
                "dynamodb.partition_key" if partition.attribute != DEFAULT_PARTITION_ATTRIBUTE else "dynamodb.sort_key",
                "the default ReplicaTable's key is the partition key 'pk' alone; name a table of your own "
                "('dynamodb.table') for other key attributes",
            )
    attributes = dynamodb.get("attributes")
    if attributes is not None:
        attributes = column_list("dynamodb.attributes", attributes, columns)
    ddb_rename = renames(
        "dynamodb.rename", dynamodb.get("rename", {}), columns, _ATTRIBUTE_NAME, "DynamoDB attribute name"
    )
    if attributes is not None:
        for column, _ in ddb_rename:
            if column not in attributes:
                raise FieldError(f"dynamodb.rename.{column}", "renames a column dynamodb.attributes leaves out")
    ddb_binary = dynamodb.get("binary", "binary")

    mapping = TableMapping(
        table=table,
        primary_key=tuple(key),
        capture=frozenset(capture),
        columns=columns,
        opensearch_enabled=opensearch_on,
        opensearch_index=index,
        dynamodb_enabled=dynamodb_on,
        json_columns=json_columns,
        opensearch_document_id=document_id,
        opensearch_rename=os_rename,
        opensearch_exclude=os_exclude,
        opensearch_binary=os_binary,
        opensearch_index_mappings=json.dumps(index_mappings, sort_keys=True) if index_mappings else "",
        opensearch_index_settings=json.dumps(index_settings, sort_keys=True) if index_settings else "",
        dynamodb_table=ddb_table,
        dynamodb_partition_key=partition,
        dynamodb_sort_key=sort,
        dynamodb_attributes=attributes,
        dynamodb_rename=ddb_rename,
        dynamodb_binary=ddb_binary,
    )
    projected = attributes if attributes is not None else columns
    if dynamodb_on and projected is not None:
        field = "dynamodb.attributes" if attributes is not None else ("dynamodb.rename" if ddb_rename else "columns")
        outputs = [(c, mapping.dynamodb_attribute(c)) for c in projected]
        check_output_names(field, outputs, mapping.dynamodb_reserved_attributes)
    if opensearch_on and columns is not None:
        outputs = [(c, mapping.opensearch_field(c)) for c in columns if c not in os_exclude]
        check_output_names("opensearch.rename", outputs, OPENSEARCH_METADATA_FIELDS | {FULL_KEY_FIELD})
    if "document" in spec:
        composition = parse_composition(table, spec["document"], key_columns, columns)
        if composition.dynamodb_document and dynamodb_on:
            check_output_names(
                "document",
                [(name, name) for name in sorted(composition.relation_names)],
                mapping.dynamodb_reserved_attributes,
            )
        mapping = replace(mapping, composition=composition)
    return mapping


def _check_shared_dynamodb_tables(mappings: dict[str, TableMapping]) -> None:
    """Mappings writing to one DynamoDB table must keep their keys apart with a ``{table}`` prefix."""
    by_table: dict[str | None, list[TableMapping]] = {}
    for mapping in mappings.values():
        if mapping.dynamodb_enabled:
            by_table.setdefault(mapping.dynamodb_table, []).append(mapping)
    for sharing in by_table.values():
        if len(sharing) < 2:
            continue
        for mapping in sharing:
            parts = mapping.dynamodb_partition_key.value.parts
            prefixed = (
                len(parts) >= 2
                and parts[0] == (True, "table")
                and not parts[1][0]
                and bool(set(parts[1][1][:1]) - ENCODED_ALPHABET)
            )
            if not prefixed:
                others = sorted(m.table for m in sharing if m is not mapping)
                raise _fail(
                    mapping.table,
                    "dynamodb.partition_key.value",
                    f"shares its DynamoDB table with {others}, so it must start with '{{table}}' and a separator "
                    "such as '#'",
                )


def parse_mappings(document: Any) -> Mappings:
    """Validate a parsed mapping document ({"tables": {name: spec}})."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), dict):
        raise MappingError('the mapping must be an object with a "tables" object')
    if not document["tables"]:
        raise MappingError("the mapping declares no tables")
    problem = schema_problem(document)  # every field's shape (tables.schema.json); what follows needs more
    if problem is not None:
        table, field, reason = problem
        raise (
            MappingError(f"table mapping: field {field!r}: {reason}") if table is None else _fail(table, field, reason)
        )
    tables = {name: _parse_table(name, spec) for name, spec in document["tables"].items()}
    _check_shared_dynamodb_tables(tables)
    return Mappings(tables)


def check_dynamodb_tables(mappings: Mappings, granted: Iterable[str]) -> None:
    """Refuse a mapping that names a DynamoDB table the fetcher was not granted (ExtraReplicaTableArns)."""
    allowed = set(granted)
    for mapping in mappings.tables.values():
        if mapping.dynamodb_enabled and mapping.dynamodb_table is not None and mapping.dynamodb_table not in allowed:
            raise _fail(
                mapping.table,
                "dynamodb.table",
                f"{mapping.dynamodb_table!r} is not granted to the fetcher; add its ARN to the stack parameter "
                f"ExtraReplicaTableArns (granted: {sorted(allowed) or 'none'})",
            )


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
