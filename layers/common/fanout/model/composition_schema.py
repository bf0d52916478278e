"""The JSON Schema of a table's ``document`` section (a composed document, :mod:`fanout.model.composition`).

Part of ``tables.schema.json`` (:mod:`fanout.model.mapping_schema` places these definitions in its ``$defs``), so
an editor checks and completes a composed document's declaration as it does a sink's section, and the loader
refuses a wrong field by its path before :func:`fanout.model.composition.parse_composition` reads it. What a
schema cannot say stays there: references to other fields and tables (a relation's root columns among the columns
read, a join from exactly the root's key, names unique across columns and relations, no relation to the root
table itself, a link table apart from its target, reference types of referenced columns only).

A ``"title"`` on a schema that constrains (``required``, ``not``, ``anyOf``, ``maxItems``, ...) is the reason
the loader gives when that constraint fails (:func:`fanout.model.mapping_schema.schema_problem`).
"""

from __future__ import annotations

from typing import Any

from fanout.model.mapping_fields import KEY_TYPES

FILTER_OPS = ("=", "!=", "in", "not in", "is null", "is not null")
DIRECTIONS = ("asc", "desc")
BEYOND_LIMIT = ("truncate", "reject")
DYNAMODB_ITEMS = ("root", "document")
RELATION_SHAPES = ("values", "objects")
DEFAULT_CHILD_LIMIT = 100
MAX_CHILD_LIMIT = 10_000  # a document of more list entries is a search index's problem, not a cap
MAX_FILTER_VALUES = 100
MAX_FILTER_TEXT = 1024
# A relation becomes a field of the document: a renamed column's rule (no dots), and not starting with "_".
RELATION_NAME = r"^[A-Za-z0-9$@][A-Za-z0-9_$@-]{0,254}$"

_IDENTIFIER = {"$ref": "#/$defs/identifier"}
_SCALAR = {
    "type": ["string", "number", "boolean"],
    "maxLength": MAX_FILTER_TEXT,
    "description": f"a string (at most {MAX_FILTER_TEXT} characters), number or boolean",
}


def _join(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "minProperties": 1,
        "propertyNames": _IDENTIFIER,
        "additionalProperties": _IDENTIFIER,
        "description": description,
    }


def _relation(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A relation's object: its name, the related table, the fields embedded, and what else ``properties`` adds."""
    return {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "pattern": RELATION_NAME,
                "title": "a usable field name (no dots, not starting with '_')",
                "description": "the document's field that holds the relation",
            },
            "table": _IDENTIFIER,
            "fields": {
                "type": "array",
                "minItems": 1,
                "items": _IDENTIFIER,
                "description": "the related table's columns embedded",
            },
            **properties,
        },
        "required": ["name", "table", *required, "fields"],
        "additionalProperties": False,
    }


_TYPES = {
    "type": "object",
    "propertyNames": _IDENTIFIER,
    "additionalProperties": {"enum": list(KEY_TYPES)},
    "description": 'the type of each referenced column, {"column": "int" or "string"} (default: int)',
}
_LIST = {
    "order_by": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"column": _IDENTIFIER, "direction": {"enum": list(DIRECTIONS), "default": "asc"}},
            "required": ["column"],
            "additionalProperties": False,
        },
        "description": "the list's order before the fields themselves",
    },
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_CHILD_LIMIT, "default": DEFAULT_CHILD_LIMIT},
    "beyond_limit": {"enum": list(BEYOND_LIMIT), "default": "truncate"},
}

DEFINITIONS: dict[str, Any] = {
    "document": {
        "type": "object",
        "description": "a document composed from related tables (README.md, 'Composed documents')",
        "properties": {
            "filter": {"$ref": "#/$defs/document_filter"},
            "parents": {"type": "array", "items": {"$ref": "#/$defs/document_parent"}},
            "children": {"type": "array", "items": {"$ref": "#/$defs/document_children"}},
            "many_to_many": {"type": "array", "items": {"$ref": "#/$defs/document_many_to_many"}},
            "dynamodb": {
                "type": "object",
                "properties": {"item": {"enum": list(DYNAMODB_ITEMS), "default": "root"}},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
        "allOf": [
            {
                "title": "must declare a relation or a filter",
                "anyOf": [
                    {"required": ["filter"]},
                    *(
                        {"required": [kind], "properties": {kind: {"minItems": 1}}}
                        for kind in ("parents", "children", "many_to_many")
                    ),
                ],
            }
        ],
    },
    "document_filter": {
        "type": "object",
        "description": "the roots that have a document; one that does not pass is absent from the sinks",
        "properties": {
            "column": _IDENTIFIER,
            "op": {"enum": list(FILTER_OPS)},
            "value": _SCALAR,
            "values": {"type": "array", "minItems": 1, "maxItems": MAX_FILTER_VALUES, "items": _SCALAR},
        },
        "required": ["column", "op"],
        "additionalProperties": False,
        "allOf": [
            {
                "if": {"properties": {"op": {"enum": ["is null", "is not null"]}}},
                "then": {
                    "title": "'is null' and 'is not null' take no value",
                    "not": {"anyOf": [{"required": ["value"]}, {"required": ["values"]}]},
                },
            },
            {
                "if": {"properties": {"op": {"enum": ["in", "not in"]}}},
                "then": {
                    "title": f"'in' and 'not in' take 'values': a list of 1 to {MAX_FILTER_VALUES} values",
                    "required": ["values"],
                    "not": {"required": ["value"]},
                },
            },
            {
                "if": {"properties": {"op": {"enum": ["=", "!="]}}},
                "then": {
                    "title": "'=' and '!=' take one 'value'",
                    "required": ["value"],
                    "not": {"required": ["values"]},
                },
            },
        ],
    },
    "document_parent": _relation(
        {
            "on": _join("root column -> the parent's column (many-to-one)"),
            "types": _TYPES,
        },
        ["on"],
    ),
    "document_children": _relation(
        {"on": _join("each root primary key column -> the child's column holding it (one-to-many)"), **_LIST},
        ["on"],
    ),
    "document_many_to_many": {
        **_relation(
            {
                "through": _IDENTIFIER,
                "through_on": _join("each root primary key column -> the link table's column holding it"),
                "on": _join("link column -> the target's column"),
                "as": {"enum": list(RELATION_SHAPES), "description": "default: values for one field, else objects"},
                "types": _TYPES,
                **_LIST,
            },
            ["through", "through_on", "on"],
        ),
        "if": {"properties": {"as": {"const": "values"}}, "required": ["as"]},
        "then": {"properties": {"fields": {"maxItems": 1, "title": "a list of values takes exactly one field"}}},
    },
}
