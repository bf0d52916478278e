"""The table mapping: which source tables are replicated, and how.

One JSON file (``tables.json`` beside this package, or the path in ``FANOUT_MAPPING_FILE``) declares every
replicated table. Its format is the JSON Schema ``tables.schema.json`` beside it (generated from
:mod:`fanout.model.mapping_schema`; every field described in README.md, "Replicating a table"). It is validated
when loaded: first against that schema, then here for what a schema cannot say; an error names the table and the
field. SQL identifiers used anywhere in the data path come only from this validated mapping, never from a payload.
The result is typed: a :class:`TableMapping` per table, with its sinks' settings in :class:`OpenSearchSection`,
:class:`DynamoDBSection` and :class:`EventBridgeSection`.

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
from dataclasses import dataclass
from functools import cached_property, lru_cache
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
    stamped,
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

    @cached_property
    def _fields(self) -> dict[str, str]:
        return dict(self.rename)

    def field(self, column: str) -> str:
        return self._fields.get(column, column)


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

    @cached_property
    def reserved_attributes(self) -> frozenset[str]:
        """Attribute names a column may not take in this table's items."""
        return BOOKKEEPING_ATTRIBUTES | self.key_attributes

    @cached_property
    def _attributes(self) -> dict[str, str]:
        return dict(self.rename)

    def attribute(self, column: str) -> str:
        return self._attributes.get(column, column)


@dataclass(frozen=True)
class EventBridgeSection:
    """A table's ``eventbridge`` section: whether each applied change is published as an event on the stack's
    bus (fanout.sinks.eventbridge). Off unless asked: consumers subscribe to a table on purpose."""

    enabled: bool = False


@dataclass(frozen=True)
class TableMapping:
    """One table's entry: what is read from the source, and one typed section per sink (``opensearch``,
    ``dynamodb``), each with its defaults filled in. A new sink adds its section here and a ``_<sink>_section``
    parser below."""

    table: str
    primary_key: tuple[KeyColumn, ...]
    capture: frozenset[str]
    columns: tuple[str, ...] | None  # None: every column of the row
    opensearch: OpenSearchSection
    dynamodb: DynamoDBSection
    json_columns: frozenset[str] = frozenset()
    composition: Composition | None = None  # a document built from several tables (fanout.model.composition)
    eventbridge: EventBridgeSection = EventBridgeSection()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(k.column for k in self.primary_key)


@dataclass(frozen=True)
class Mappings:
    tables: Mapping[str, TableMapping]

    def get(self, table: str) -> TableMapping | None:
        return self.tables.get(table)

    def dynamodb_tables(self) -> frozenset[str]:
        """The DynamoDB tables named by the mapping (besides the default ReplicaTable)."""
        return frozenset(
            m.dynamodb.table for m in self.tables.values() if m.dynamodb.enabled and m.dynamodb.table is not None
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
    dynamodb = _dynamodb_section(spec.get("dynamodb", {}), key_columns, columns)
    opensearch = _opensearch_section(table, spec.get("opensearch", {}), key_columns, columns)
    composition = None
    if "document" in spec:
        assert columns is not None  # the schema requires them beside a document
        composition = parse_composition(table, spec["document"], key_columns, columns)
        if composition.dynamodb_document and dynamodb.enabled:
            names = [(name, name) for name in sorted(composition.relation_names)]
            check_output_names("document", names, dynamodb.reserved_attributes)
    return TableMapping(
        table=table,
        primary_key=tuple(key),
        capture=frozenset(capture),
        columns=columns,
        opensearch=opensearch,
        dynamodb=dynamodb,
        json_columns=json_columns,
        composition=composition,
        eventbridge=_eventbridge_section(spec.get("eventbridge", {})),
    )


def _eventbridge_section(spec: dict[str, Any]) -> EventBridgeSection:
    """The ``eventbridge`` section of a table's entry: the schema has said all there is to say."""
    return EventBridgeSection(enabled=spec.get("enabled", False))


def _opensearch_section(
    table: str, spec: dict[str, Any], key_columns: tuple[str, ...], columns: tuple[str, ...] | None
) -> OpenSearchSection:
    """The ``opensearch`` section of a table's entry (``spec``: that section, of the schema's shape)."""
    enabled = spec.get("enabled", True)
    index = spec.get("index", table.lower())
    if enabled and not _INDEX_NAME.match(index):  # a table name's lower case may still not be one
        raise FieldError("opensearch.index", f"{index!r} is not a valid OpenSearch index name")
    document_id = DEFAULT_DOCUMENT_ID
    if "document_id" in spec:
        id_names = set(key_columns) | {"key", "table"}
        document_id = parse_key_format(spec["document_id"], id_names, lambda m: FieldError("opensearch.document_id", m))
        uncovered = set(key_columns) - covered_key_columns([document_id], key_columns)
        if uncovered:
            raise FieldError("opensearch.document_id", f"must name every key column; missing {sorted(uncovered)}")
    exclude = frozenset(column_list("opensearch.exclude", spec.get("exclude", []), columns))
    rename = renames("opensearch.rename", spec.get("rename", {}), columns, _FIELD_NAME, "OpenSearch field name")
    for column, target in rename:
        if target in OPENSEARCH_METADATA_FIELDS or target == FULL_KEY_FIELD:
            raise FieldError(f"opensearch.rename.{column}", f"{target!r} is an OpenSearch metadata field")
        if column in exclude:
            raise FieldError(f"opensearch.rename.{column}", "renames a column that opensearch.exclude leaves out")
    index_mappings = spec.get("index_mappings", {})
    index_settings = spec.get("index_settings", {})
    section = OpenSearchSection(
        enabled=enabled,
        index=index,
        document_id=document_id,
        rename=rename,
        exclude=exclude,
        binary=spec.get("binary", "base64"),
        index_mappings=json.dumps(index_mappings, sort_keys=True) if index_mappings else "",
        index_settings=json.dumps(index_settings, sort_keys=True) if index_settings else "",
    )
    if enabled and columns is not None:
        outputs = [(c, section.field(c)) for c in columns if c not in exclude]
        check_output_names("opensearch.rename", outputs, OPENSEARCH_METADATA_FIELDS | {FULL_KEY_FIELD})
    return section


def _dynamodb_section(
    spec: dict[str, Any], key_columns: tuple[str, ...], columns: tuple[str, ...] | None
) -> DynamoDBSection:
    """The ``dynamodb`` section of a table's entry (``spec``: that section, of the schema's shape)."""
    enabled = spec.get("enabled", True)
    table = spec.get("table")
    id_names = set(key_columns) | {"key", "table"}
    partition = _key_attribute("dynamodb.partition_key", spec.get("partition_key"), id_names, DEFAULT_PARTITION_KEY)
    assert partition is not None
    sort = _key_attribute("dynamodb.sort_key", spec.get("sort_key"), id_names, None)
    if sort is not None and sort.attribute == partition.attribute:
        raise FieldError("dynamodb.sort_key.attribute", "must differ from the partition key attribute")
    formats = [partition.value] + ([sort.value] if sort else [])
    uncovered = set(key_columns) - covered_key_columns(formats, key_columns)
    if uncovered:
        missing = sorted(uncovered)
        raise FieldError("dynamodb.partition_key", f"the key formats must name every key column; missing {missing}")
    if table is None and (partition.attribute != DEFAULT_PARTITION_ATTRIBUTE or sort is not None):
        raise FieldError(
            "dynamodb.partition_key" if partition.attribute != DEFAULT_PARTITION_ATTRIBUTE else "dynamodb.sort_key",
            "the default ReplicaTable's key is the partition key 'pk' alone; name a table of your own "
            "('dynamodb.table') for other key attributes",
        )
    attributes = spec.get("attributes")
    if attributes is not None:
        attributes = column_list("dynamodb.attributes", attributes, columns)
    rename = renames("dynamodb.rename", spec.get("rename", {}), columns, _ATTRIBUTE_NAME, "DynamoDB attribute name")
    if attributes is not None:
        for column, _ in rename:
            if column not in attributes:
                raise FieldError(f"dynamodb.rename.{column}", "renames a column dynamodb.attributes leaves out")
    section = DynamoDBSection(
        enabled=enabled,
        table=table,
        partition_key=partition,
        sort_key=sort,
        attributes=attributes,
        rename=rename,
        binary=spec.get("binary", "binary"),
    )
    projected = attributes if attributes is not None else columns
    if enabled and projected is not None:
        field = "dynamodb.attributes" if attributes is not None else ("dynamodb.rename" if rename else "columns")
        outputs = [(c, section.attribute(c)) for c in projected]
        check_output_names(field, outputs, section.reserved_attributes)
    return section


def _check_shared_dynamodb_tables(mappings: dict[str, TableMapping]) -> None:
    """Mappings writing to one DynamoDB table must keep their keys apart with a ``{table}`` prefix."""
    by_table: dict[str | None, list[TableMapping]] = {}
    for mapping in mappings.values():
        if mapping.dynamodb.enabled:
            by_table.setdefault(mapping.dynamodb.table, []).append(mapping)
    for sharing in by_table.values():
        if len(sharing) < 2:
            continue
        for mapping in sharing:
            parts = mapping.dynamodb.partition_key.value.parts
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


def parse_mappings(document: Any, *, schema_checked: bool = False) -> Mappings:
    """Validate a parsed mapping document ({"tables": {name: spec}}); ``schema_checked``: it passed the schema
    already (its stamp, fanout.model.mapping_stamp), only the typed parse is left."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), dict):
        raise MappingError('the mapping must be an object with a "tables" object')
    if not document["tables"]:
        raise MappingError("the mapping declares no tables")
    # every field's shape (tables.schema.json); what follows needs more
    problem = None if schema_checked else schema_problem(document)
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
        section = mapping.dynamodb
        if section.enabled and section.table is not None and section.table not in allowed:
            raise _fail(
                mapping.table,
                "dynamodb.table",
                f"{section.table!r} is not granted to the fetcher; add its ARN to the stack parameter "
                f"ExtraReplicaTableArns (granted: {sorted(allowed) or 'none'})",
            )


def check_event_bus(mappings: Mappings, bus_name: str) -> None:
    """Refuse a mapping that publishes a table's events when the function was given no bus (EVENT_BUS_NAME)."""
    if bus_name:
        return
    for mapping in mappings.tables.values():
        if mapping.eventbridge.enabled:
            raise _fail(
                mapping.table,
                "eventbridge.enabled",
                "events are on, but this function has no event bus (EVENT_BUS_NAME, the stack's EventBus)",
            )


def load_mappings(path: str | os.PathLike[str] | None = None) -> Mappings:
    """Load and validate the mapping file (``FANOUT_MAPPING_FILE`` or the bundled one)."""
    path = Path(path or os.environ.get("FANOUT_MAPPING_FILE") or DEFAULT_MAPPING_FILE)
    try:
        raw = path.read_bytes()
        document = json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise MappingError(f"cannot read table mapping {path}: {exc}") from exc
    except ValueError as exc:
        raise MappingError(f"table mapping {path} is not valid JSON: {exc}") from exc
    # the layer's bundled mapping passed the schema when the layer was built (fanout.model.mapping_stamp)
    return parse_mappings(document, schema_checked=stamped(path, raw))


@lru_cache(maxsize=1)
def default_mappings() -> Mappings:
    """The mapping for this execution environment, loaded once."""
    return load_mappings()
