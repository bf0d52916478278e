"""The JSON Schema of ``tables.json``: the shape of every field, checked before anything reads a value.

One schema serves two readers. Editors validate and complete ``tables.json`` with ``tables.schema.json``
(named by its ``"$schema"``; README.md, "Replicating a table"), which ``python -m fanout.model.mapping_schema``
writes from :data:`SCHEMA` and a unit test keeps up to date. At load, :func:`schema_problem` checks a mapping
document against the same :data:`SCHEMA` (jsonschema, Draft 2020-12) and names the table and the field of the
first problem; :mod:`fanout.model.mapping` then checks what a schema cannot say (a key format naming every key
column, a rename among the columns read, names a sink reserves) and builds the typed mapping.

jsonschema rather than pydantic: the schema is data that editors and the loader share verbatim, the mapping's
types stay frozen dataclasses, and it costs a third of the layer size and about half the cold-start time
(docs/architecture.md, "Decisions taken along the way").
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from fanout.model.composition_schema import DEFINITIONS as DOCUMENT_DEFINITIONS
from fanout.model.mapping_fields import IDENTIFIER, KEY_TYPES

ACTIONS = ("insert", "update", "delete")
OPENSEARCH_BINARY = ("base64", "exclude")
DYNAMODB_BINARY = ("binary", "base64", "exclude")
INDEX_NAME = r"^[a-z0-9][a-z0-9_.-]{0,254}$"
# A field name for OpenSearch: no dots (they are read as object paths).
FIELD_NAME = r"^[A-Za-z0-9_$@][A-Za-z0-9_$@-]{0,254}$"
DYNAMODB_TABLE = r"^[A-Za-z0-9_.-]{3,255}$"
ATTRIBUTE_NAME = r"^[A-Za-z0-9_.-]{1,255}$"

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "tables.schema.json"

_IDENTIFIER = {
    "type": "string",
    "pattern": IDENTIFIER.pattern,
    "title": "a plain SQL identifier ([A-Za-z_][A-Za-z0-9_$]*, at most 64)",
}


def _columns(description: str, *, min_items: int = 0) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": "#/$defs/identifier"}, "minItems": min_items, "description": description}


def _renames(what: str, pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"column -> {what}",
        "propertyNames": {"$ref": "#/$defs/identifier"},
        "additionalProperties": {"type": "string", "pattern": pattern, "title": f"a valid {what}"},
    }


def _key_attribute(description: str, required: list[str]) -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "description": description,
        "properties": {
            "attribute": {"type": "string", "pattern": ATTRIBUTE_NAME, "title": "a usable DynamoDB attribute name"},
            "value": {"type": "string", "description": "a key format: {<key column>}, {key}, {table} and text"},
        },
        "required": required,
        "additionalProperties": False,
    }


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fanout table mapping (tables.json)",
    "description": "Which source tables fanout replicates, and how (README.md, 'Replicating a table').",
    "type": "object",
    "properties": {
        "$schema": {"type": "string", "description": "the schema editors check this file against"},
        "tables": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"$ref": "#/$defs/identifier"},
            "additionalProperties": {"$ref": "#/$defs/table"},
        },
    },
    "required": ["tables"],
    "additionalProperties": False,
    "$defs": {
        "identifier": _IDENTIFIER,
        "table": {
            "type": "object",
            "properties": {
                "primary_key": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "column": {"$ref": "#/$defs/identifier"},
                            "type": {"enum": list(KEY_TYPES), "default": "int"},
                        },
                        "required": ["column"],
                        "additionalProperties": False,
                    },
                },
                "capture": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"enum": list(ACTIONS)},
                    "default": list(ACTIONS),
                },
                "columns": _columns("the columns read (default: every column)", min_items=1),
                "json_columns": _columns("text columns whose text is JSON"),
                "opensearch": {"$ref": "#/$defs/opensearch"},
                "dynamodb": {"$ref": "#/$defs/dynamodb"},
                "eventbridge": {"$ref": "#/$defs/eventbridge"},
                "document": {"$ref": "#/$defs/document"},
            },
            "required": ["primary_key"],
            "dependentRequired": {"document": ["columns"]},  # so relations cannot collide with columns
            "additionalProperties": False,
        },
        "opensearch": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "index": {
                    "type": "string",
                    "pattern": INDEX_NAME,
                    "title": "a valid OpenSearch index name",
                    "description": "default: the table name, lower-cased",
                },
                "document_id": {"type": "string", "description": "a key format (default: {key})"},
                "rename": _renames("OpenSearch field name", FIELD_NAME),
                "exclude": _columns("columns left out of the document"),
                "binary": {"enum": list(OPENSEARCH_BINARY), "default": "base64"},
                "index_mappings": {
                    "type": "object",
                    "properties": {"properties": {"type": "object"}},
                    "description": "the mappings of the index when the sink creates it",
                },
                "index_settings": {
                    "type": "object",
                    "description": "the settings of each index generation fanout creates (number_of_shards, "
                    "analysis, ...); a change OpenSearch cannot apply in place needs `fanout reindex TABLE`",
                },
            },
            "additionalProperties": False,
        },
        "dynamodb": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "table": {
                    "type": ["string", "null"],
                    "pattern": DYNAMODB_TABLE,
                    "title": "a valid DynamoDB table name (or null)",
                    "description": "default (null): the stack's ReplicaTable",
                },
                "partition_key": _key_attribute("default: {attribute: pk, value: {table}#{key}}", []),
                "sort_key": _key_attribute("default: none", ["attribute", "value"]),
                "attributes": {**_columns("projected columns (default: every column read)", min_items=1)},
                "rename": _renames("DynamoDB attribute name", ATTRIBUTE_NAME),
                "binary": {"enum": list(DYNAMODB_BINARY), "default": "binary"},
            },
            "additionalProperties": False,
        },
        "eventbridge": {
            "type": "object",
            "description": "one event per applied change on the stack's event bus (README.md, 'Change events')",
            "properties": {"enabled": {"type": "boolean", "default": False}},
            "additionalProperties": False,
        },
        **DOCUMENT_DEFINITIONS,
    },
}

_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "null": "null",
    "integer": "an integer",
    "number": "a number",
}


def _field(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _explain(error: Any) -> tuple[list[str | int], str]:
    """The path of the offending field and the reason, for one error jsonschema found."""
    path = list(error.absolute_path)
    kind, schema, instance = error.validator, error.schema, error.instance
    if "propertyNames" in error.absolute_schema_path:  # a name the writer chose: a table's, or a renamed column's
        return [*path, instance], f"{instance!r} is not {_IDENTIFIER['title']}"
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = sorted(schema.get("properties", {}))
        unknown = sorted(set(instance) - set(known))
        return [*path, unknown[0]], f"unknown field (known: {', '.join(known)})"
    if kind == "required":
        missing = [name for name in schema["required"] if name not in instance]
        return [*path, missing[0]], schema.get("title", "is required")
    if kind == "dependentRequired":
        needing = next(name for name, needs in schema[kind].items() if name in instance and set(needs) - set(instance))
        missing = [name for name in schema[kind][needing] if name not in instance]
        return [*path, missing[0]], f"is required when {needing!r} is declared"
    if kind in ("not", "anyOf", "maxItems") and "title" in schema:  # a constraint whose title says it
        return path, schema["title"]
    if kind == "type":
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return path, "must be " + " or ".join(_TYPE_WORDS.get(str(k), str(k)) for k in kinds) + f", got {instance!r}"
    if kind == "enum":
        return path, f"{instance!r} is not one of {schema['enum']}"
    if kind == "pattern":
        return path, f"{instance!r} is not {schema.get('title', 'of the form ' + schema['pattern'])}"
    if kind in ("minItems", "minProperties"):
        return path, "must not be empty"
    if kind == "maxItems":
        return path, f"must hold at most {schema['maxItems']}"
    if kind in ("minimum", "maximum"):
        return path, f"{instance!r} must be from {schema.get('minimum')} to {schema.get('maximum')}"
    if kind == "maxLength":
        return path, f"must be at most {schema['maxLength']} characters long"
    return path, str(error.message)


def inlined(node: Any) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/<name>"}`` replaced by that definition: the same schema, without
    the reference lookups that take jsonschema two thirds of a validation (bench/results/cold_import.md)."""
    if isinstance(node, dict):
        if "$ref" in node:
            if len(node) != 1:
                raise ValueError(f"a $ref beside other keywords cannot be inlined: {sorted(node)}")
            return inlined(SCHEMA["$defs"][node["$ref"].removeprefix("#/$defs/")])
        return {key: inlined(value) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [inlined(value) for value in node]
    return node


@lru_cache(maxsize=1)
def _validator() -> Any:
    """The validator of :data:`SCHEMA`, built once per process."""
    from jsonschema.validators import Draft202012Validator  # ~35 ms: only loading a mapping uses it

    return Draft202012Validator(inlined(SCHEMA))


def schema_problem(document: Any) -> tuple[str | None, str, str] | None:
    """The problem :data:`SCHEMA` finds in a mapping document at the first field path (tables, then fields, by
    name; list items by index), so a file always reports the same one first: (table or None, field, reason).
    None when there is none."""
    errors = list(_validator().iter_errors(document))
    if not errors:
        return None
    path, reason = min(
        (_explain(error) for error in errors),
        key=lambda found: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in found[0]],
    )
    if len(path) < 2 or path[0] != "tables":
        return None, _field(path) or "<mapping>", reason
    table_name_refused = len(path) == 2 and reason.startswith(f"{path[1]!r} is not a plain SQL identifier")
    return str(path[1]), "<table name>" if table_name_refused else (_field(path[2:]) or "<table>"), reason


def stamp_path(mapping_file: Path) -> Path:
    """Where the layer's build records that ``mapping_file`` passed the schema (fanout.model.mapping_stamp)."""
    return mapping_file.with_name(mapping_file.name + ".sha256")


def schema_digest(document: bytes) -> str:
    """The digest of a mapping's bytes and of the schema (as this code holds it) that checks them."""
    schema = json.dumps(SCHEMA, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(schema + b"\0" + document).hexdigest()


def stamped(mapping_file: Path, document: bytes) -> bool:
    """Whether ``document`` (the bytes of ``mapping_file``) passed the schema when its stamp was written."""
    try:
        return stamp_path(mapping_file).read_text(encoding="ascii").strip() == schema_digest(document)
    except (OSError, UnicodeDecodeError):
        return False


def main(argv: list[str]) -> int:
    """Write tables.schema.json (or the path given) from :data:`SCHEMA`."""
    path = Path(argv[1]) if len(argv) > 1 else SCHEMA_FILE
    path.write_text(json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
