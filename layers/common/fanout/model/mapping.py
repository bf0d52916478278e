"""The table mapping: which source tables are replicated, and how.

One JSON file (``tables.json`` beside this module, or the path in
``FANOUT_MAPPING_FILE``) declares every replicated table. It is validated when
loaded; an error names the table and the field. SQL identifiers used anywhere
in the data path come only from this validated mapping, never from a payload.

A table's entry (every field but ``primary_key`` is optional)::

    "tenant_settings": {
      "primary_key": [{"column": "tenant", "type": "string"},
                      {"column": "setting_key", "type": "string"}],
      "capture": ["insert", "update", "delete"],      # default: all three
      "columns": ["tenant", "setting_key", ...],      # what is read; default: every column
      "json_columns": ["value"],                      # parsed as JSON (needed on MariaDB, see below)
      "opensearch": {
        "enabled": true,
        "index": "tenant-settings",                   # default: the table name, lower-cased
        "document_id": "{tenant}:{setting_key}",      # default: "{key}"
        "rename": {"description": "summary"},         # column -> field
        "exclude": ["secret_hash"],                   # columns left out of the document
        "binary": "base64",                           # or "exclude"
        "index_mappings": {"properties": {"value": {"type": "object", "enabled": false}}}
                                                      # mappings of the index when the sink creates it
      },
      "dynamodb": {
        "enabled": true,
        "table": null,                                # default: the stack's ReplicaTable
        "partition_key": {"attribute": "pk", "value": "{table}#{key}"},
        "sort_key": null,                             # or {"attribute": "sk", "value": "{setting_key}"}
        "attributes": ["tenant", "setting_key", "value"],   # projected columns; default: all read
        "rename": {},                                 # column -> attribute
        "binary": "binary"                            # B attribute, or "base64" (S), or "exclude"
      }
    }

Key formats (``document_id``, ``partition_key.value``, ``sort_key.value``) are
templates: ``{<key column>}`` is that key value, ``{key}`` all key values in
key order joined by ``|``, ``{table}`` the source table's name (these two win
over key columns so named); each value is
percent-encoded (``urllib.parse.quote(str(v), safe="")``), so a value can never
contain a separator. A format must name every key column (``{key}`` names them
all), and two placeholders must be separated by a character the first one can
never contain (anything but letters, digits, ``_.~-%``, and ``|`` after
``{key}``), so that a sink key maps back to exactly one source key.

JSON columns: MySQL reports a JSON column's type, so it is detected; MariaDB's
JSON is a LONGTEXT alias that looks like any text column, so list it in
``json_columns`` (harmless on MySQL).

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from fanout.model.composition import Composition

ACTIONS = ("insert", "update", "delete")
KEY_TYPES = ("int", "string")
# Where a document or item keeps its full key when its id is a bounded one (fanout.sinks.documents.bounded_sink_id).
FULL_KEY_FIELD = "_fanout_key"
# Item attributes the DynamoDB sink owns (besides the key attributes); a replicated column may not use them.
BOOKKEEPING_ATTRIBUTES = frozenset({"_table", "_version", "_deleted", "_ttl", FULL_KEY_FIELD})
DEFAULT_PARTITION_ATTRIBUTE = "pk"
RESERVED_ITEM_ATTRIBUTES = BOOKKEEPING_ATTRIBUTES | {DEFAULT_PARTITION_ATTRIBUTE}  # in the default table
OPENSEARCH_BINARY = ("base64", "exclude")
DYNAMODB_BINARY = ("binary", "base64", "exclude")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,254}$")
# A field name for OpenSearch: no dots (they are read as object paths), not a metadata field.
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_$@][A-Za-z0-9_$@-]{0,254}$")
OPENSEARCH_METADATA_FIELDS = frozenset(
    {
        "_id", "_index", "_source", "_routing", "_field_names", "_ignored", "_seq_no", "_primary_term",
        "_version", "_doc_count", "_type", "_size", "_meta", "_tier", "_nested_path", "_data_stream_timestamp",
    }
)  # fmt: skip
_DYNAMODB_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# What urllib.parse.quote(value, safe="") can produce: unreserved characters and %XX escapes.
_ENCODED_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-%")
KEY_SEPARATOR = "|"

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parent.parent / "tables.json"


class MappingError(ValueError):
    """The mapping file is invalid; the message names the table and field."""


@dataclass(frozen=True)
class KeyColumn:
    column: str
    type: str  # "int" or "string"


def encode_key_value(value: Any) -> str:
    return quote(str(value), safe="")


def default_key_text(values: Iterable[Any]) -> str:
    """``{key}``: every key value percent-encoded, joined by ``|`` (the default document id)."""
    return KEY_SEPARATOR.join(encode_key_value(v) for v in values)


@dataclass(frozen=True)
class KeyFormat:
    """A validated key template, e.g. ``"{table}#{key}"`` or ``"{tenant}:{slug}"``."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_placeholder, literal text or placeholder name)

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(name for is_placeholder, name in self.parts if is_placeholder)

    def render(self, table: str, key: tuple[tuple[str, Any], ...]) -> str:
        values = dict(key)
        out = []
        for is_placeholder, name in self.parts:
            if not is_placeholder:
                out.append(name)
            elif name == "key":
                out.append(default_key_text(values.values()))
            elif name == "table":
                out.append(encode_key_value(table))
            else:
                out.append(encode_key_value(values[name]))
        return "".join(out)


def parse_key_format(text: Any, allowed: Iterable[str], fail: Callable[[str], MappingError]) -> KeyFormat:
    """Parse and check a key template; ``fail(message)`` builds the error naming the field."""
    if not isinstance(text, str) or not text or len(text) > 256:
        raise fail(f"{text!r} must be a non-empty template string of at most 256 characters")
    allowed = set(allowed)
    parts: list[tuple[bool, str]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append((False, text[position : match.start()]))
        name = match.group(1)
        if name not in allowed:
            raise fail(f"placeholder {{{name}}} in {text!r} is not one of {sorted('{' + a + '}' for a in allowed)}")
        parts.append((True, name))
        position = match.end()
    if position < len(text):
        parts.append((False, text[position:]))
    for is_placeholder, literal in parts:
        if not is_placeholder and ("{" in literal or "}" in literal):
            raise fail(f"{text!r} has an unmatched brace")
    previous: str | None = None
    for is_placeholder, name in parts:
        if is_placeholder:
            if previous is not None:
                raise fail(
                    f"{{{previous}}} and {{{name}}} in {text!r} need a separator between them that "
                    "an encoded value cannot contain (e.g. ':', '#', '/')"
                )
            previous = name
        elif previous is not None:
            alphabet = _ENCODED_ALPHABET | ({KEY_SEPARATOR} if previous == "key" else set())
            if not set(name) - alphabet:
                raise fail(
                    f"the separator {name!r} after {{{previous}}} in {text!r} is made of characters an encoded "
                    "value can contain; use e.g. ':', '#' or '/'"
                )
            previous = None
    return KeyFormat(text, tuple(parts))


def _covered_key_columns(formats: Iterable[KeyFormat], key_columns: tuple[str, ...]) -> set[str]:
    covered: set[str] = set()
    for key_format in formats:
        if "key" in key_format.placeholders:
            covered.update(key_columns)
        # {key} and {table} always mean the special values, even for a key column so named
        covered.update((key_format.placeholders - {"key", "table"}) & set(key_columns))
    return covered


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
class TableMapping:
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
    dynamodb_table: str | None = None  # None: the stack's ReplicaTable (DYNAMODB_TABLE)
    dynamodb_partition_key: KeyAttribute = DEFAULT_PARTITION_KEY
    dynamodb_sort_key: KeyAttribute | None = None
    dynamodb_attributes: tuple[str, ...] | None = None  # None: every column read
    dynamodb_rename: tuple[tuple[str, str], ...] = ()  # (column, attribute)
    dynamodb_binary: str = "binary"
    composition: Composition | None = None  # a document built from several tables (fanout.model.composition)

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(k.column for k in self.primary_key)

    @property
    def dynamodb_key_attributes(self) -> frozenset[str]:
        names = {self.dynamodb_partition_key.attribute}
        if self.dynamodb_sort_key is not None:
            names.add(self.dynamodb_sort_key.attribute)
        return frozenset(names)

    @property
    def dynamodb_reserved_attributes(self) -> frozenset[str]:
        """Attribute names a column may not take in this table's items."""
        return BOOKKEEPING_ATTRIBUTES | self.dynamodb_key_attributes

    def opensearch_field(self, column: str) -> str:
        return dict(self.opensearch_rename).get(column, column)

    def dynamodb_attribute(self, column: str) -> str:
        return dict(self.dynamodb_rename).get(column, column)


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


def _identifier(table: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise _fail(table, field, f"{value!r} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_$]*, at most 64)")
    return value


def _known_fields(table: str, where: str, spec: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise _fail(table, name, f"unknown field (known: {', '.join(sorted(known))})")


def _column_list(table: str, field: str, value: Any, columns: tuple[str, ...] | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(table, field, "must be a list of column names")
    names = tuple(_identifier(table, f"{field}[{i}]", c) for i, c in enumerate(value))
    if len(set(names)) != len(names):
        raise _fail(table, field, "lists a column twice")
    if columns is not None:
        unread = [c for c in names if c not in columns]
        if unread:
            raise _fail(table, field, f"{unread} are not among the columns read ('columns')")
    return names


def _renames(
    table: str, field: str, value: Any, columns: tuple[str, ...] | None, name_pattern: re.Pattern[str], what: str
) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _fail(table, field, 'must be an object {"column": "new name"}')
    pairs: list[tuple[str, str]] = []
    for column, target in value.items():
        _identifier(table, f"{field}.{column}", column)
        if columns is not None and column not in columns:
            raise _fail(table, f"{field}.{column}", "is not among the columns read ('columns')")
        if not isinstance(target, str) or not name_pattern.match(target):
            raise _fail(table, f"{field}.{column}", f"{target!r} is not a valid {what}")
        pairs.append((column, target))
    targets = [t for _, t in pairs]
    if len(set(targets)) != len(targets):
        raise _fail(table, field, "renames two columns to the same name")
    return tuple(pairs)


def _check_output_names(table: str, field: str, names: list[tuple[str, str]], reserved: frozenset[str]) -> None:
    """``names``: (column, output name) for every column a sink will get; none may collide or be reserved."""
    seen: dict[str, str] = {}
    for column, name in names:
        if name in reserved:
            raise _fail(table, field, f"column {column!r} would be written as {name!r}, a name the sink reserves")
        if name in seen:
            raise _fail(table, field, f"columns {seen[name]!r} and {column!r} would both be written as {name!r}")
        seen[name] = column


def _binary(table: str, field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(table, field, f"{value!r} is not one of {list(choices)}")
    return str(value)


def _key_attribute(
    table: str, field: str, value: Any, allowed: set[str], default: KeyAttribute | None
) -> KeyAttribute | None:
    if value is None:
        return default
    if not isinstance(value, dict):
        raise _fail(table, field, 'must be an object {"attribute": ..., "value": ...}')
    _known_fields(table, field, value, {"attribute", "value"})
    attribute = value.get("attribute", default.attribute if default else None)
    if not isinstance(attribute, str) or not _ATTRIBUTE_NAME.match(attribute) or attribute in BOOKKEEPING_ATTRIBUTES:
        raise _fail(table, f"{field}.attribute", f"{attribute!r} is not a usable DynamoDB attribute name")
    text = value.get("value", default.value.text if default else None)
    key_format = parse_key_format(text, allowed, lambda m: _fail(table, f"{field}.value", m))
    return KeyAttribute(attribute, key_format)


def _parse_table(table: str, spec: Any) -> TableMapping:
    _identifier(table, "<table name>", table)
    if not isinstance(spec, dict):
        raise _fail(table, "<table>", "must be an object")
    _known_fields(
        table, "", spec, {"primary_key", "capture", "columns", "json_columns", "opensearch", "dynamodb", "document"}
    )

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
    key_columns = tuple(k.column for k in key)
    if len(set(key_columns)) != len(key):
        raise _fail(table, "primary_key", "lists a column twice")

    capture = spec.get("capture", list(ACTIONS))
    if not isinstance(capture, list) or not capture or any(a not in ACTIONS for a in capture):
        raise _fail(table, "capture", f"must be a non-empty list drawn from {ACTIONS}, got {capture!r}")

    columns = spec.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not columns:
            raise _fail(table, "columns", "must be a non-empty list of column names (or absent for all)")
        columns = tuple(_identifier(table, f"columns[{i}]", c) for i, c in enumerate(columns))
        if len(set(columns)) != len(columns):
            raise _fail(table, "columns", "lists a column twice")
        missing = [c for c in key_columns if c not in columns]
        if missing:
            raise _fail(table, "columns", f"must include the primary key column(s) {missing}")
    json_columns = frozenset(_column_list(table, "json_columns", spec.get("json_columns", []), columns))

    opensearch = spec.get("opensearch", {})
    dynamodb = spec.get("dynamodb", {})
    for name, sink in (("opensearch", opensearch), ("dynamodb", dynamodb)):
        if not isinstance(sink, dict):
            raise _fail(table, name, "must be an object")
    _known_fields(
        table,
        "opensearch",
        opensearch,
        {"enabled", "index", "document_id", "rename", "exclude", "binary", "index_mappings"},
    )
    _known_fields(
        table,
        "dynamodb",
        dynamodb,
        {"enabled", "table", "partition_key", "sort_key", "attributes", "rename", "binary"},
    )
    for name, sink in (("opensearch", opensearch), ("dynamodb", dynamodb)):
        if not isinstance(sink.get("enabled", True), bool):
            raise _fail(table, f"{name}.enabled", "must be true or false")

    # OpenSearch
    index = opensearch.get("index", table.lower())
    opensearch_on = opensearch.get("enabled", True)
    if opensearch_on and (not isinstance(index, str) or not _INDEX_NAME.match(index)):
        raise _fail(table, "opensearch.index", f"{index!r} is not a valid OpenSearch index name")
    id_names = set(key_columns) | {"key", "table"}
    document_id = DEFAULT_DOCUMENT_ID
    if "document_id" in opensearch:
        document_id = parse_key_format(
            opensearch["document_id"], id_names, lambda m: _fail(table, "opensearch.document_id", m)
        )
        uncovered = set(key_columns) - _covered_key_columns([document_id], key_columns)
        if uncovered:
            raise _fail(table, "opensearch.document_id", f"must name every key column; missing {sorted(uncovered)}")
    os_exclude = frozenset(_column_list(table, "opensearch.exclude", opensearch.get("exclude", []), columns))
    os_rename = _renames(
        table, "opensearch.rename", opensearch.get("rename", {}), columns, _FIELD_NAME, "OpenSearch field name"
    )
    for column, target in os_rename:
        if target in OPENSEARCH_METADATA_FIELDS or target == FULL_KEY_FIELD:
            raise _fail(table, f"opensearch.rename.{column}", f"{target!r} is an OpenSearch metadata field")
    for column, _ in os_rename:
        if column in os_exclude:
            raise _fail(table, f"opensearch.rename.{column}", "renames a column that opensearch.exclude leaves out")
    os_binary = _binary(table, "opensearch.binary", opensearch.get("binary", "base64"), OPENSEARCH_BINARY)
    index_mappings = opensearch.get("index_mappings", {})
    if not isinstance(index_mappings, dict) or not isinstance(index_mappings.get("properties", {}), dict):
        raise _fail(table, "opensearch.index_mappings", "must be an object of OpenSearch mappings (with properties)")

    # DynamoDB
    dynamodb_on = dynamodb.get("enabled", True)
    ddb_table = dynamodb.get("table")
    if ddb_table is not None and (not isinstance(ddb_table, str) or not _DYNAMODB_TABLE.match(ddb_table)):
        raise _fail(table, "dynamodb.table", f"{ddb_table!r} is not a valid DynamoDB table name (or null)")
    partition = _key_attribute(
        table, "dynamodb.partition_key", dynamodb.get("partition_key"), id_names, DEFAULT_PARTITION_KEY
    )
    assert partition is not None
    sort = _key_attribute(table, "dynamodb.sort_key", dynamodb.get("sort_key"), id_names, None)
    if sort is not None and sort.attribute == partition.attribute:
        raise _fail(table, "dynamodb.sort_key.attribute", "must differ from the partition key attribute")
    formats = [partition.value] + ([sort.value] if sort else [])
    uncovered = set(key_columns) - _covered_key_columns(formats, key_columns)
    if uncovered:
        raise _fail(table, "dynamodb.partition_key", f"the key formats must name every key column; missing "
                    f"{sorted(uncovered)}")  # fmt: skip
    if ddb_table is None:
        if partition.attribute != DEFAULT_PARTITION_ATTRIBUTE or sort is not None:
            raise _fail(
                table,
                "dynamodb.partition_key" if partition.attribute != DEFAULT_PARTITION_ATTRIBUTE else "dynamodb.sort_key",
                "the default ReplicaTable's key is the partition key 'pk' alone; name a table of your own "
                "('dynamodb.table') for other key attributes",
            )
    attributes = dynamodb.get("attributes")
    if attributes is not None:
        attributes = _column_list(table, "dynamodb.attributes", attributes, columns)
        if not attributes:
            raise _fail(table, "dynamodb.attributes", "must list at least one column (or be absent for all)")
    ddb_rename = _renames(
        table, "dynamodb.rename", dynamodb.get("rename", {}), columns, _ATTRIBUTE_NAME, "DynamoDB attribute name"
    )
    if attributes is not None:
        for column, _ in ddb_rename:
            if column not in attributes:
                raise _fail(table, f"dynamodb.rename.{column}", "renames a column dynamodb.attributes leaves out")
    ddb_binary = _binary(table, "dynamodb.binary", dynamodb.get("binary", "binary"), DYNAMODB_BINARY)

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
        _check_output_names(table, field, outputs, mapping.dynamodb_reserved_attributes)
    if opensearch_on and columns is not None:
        outputs = [(c, mapping.opensearch_field(c)) for c in columns if c not in os_exclude]
        _check_output_names(table, "opensearch.rename", outputs, OPENSEARCH_METADATA_FIELDS | {FULL_KEY_FIELD})
    if "document" in spec:
        from fanout.model.composition import parse_composition  # it builds on this module's errors

        composition = parse_composition(table, spec["document"], key_columns, columns)
        if composition.dynamodb_document and dynamodb_on:
            _check_output_names(
                table,
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
                and bool(set(parts[1][1][:1]) - _ENCODED_ALPHABET)
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
