"""Changes to tables that feed composed documents: which root documents they touch.

A trigger on a table feeding a document (fanout.capture.composition_triggers) sends, in format version 1::

    {"v": 1, "action": "update", "table": "comments", "ts": 1764240000.123456,
     "refs": [{"root": "articles", "via": "comments", "new": {"id": 7}, "old": {"id": 3}}]}

one ``ref`` per relation the table feeds; ``new`` (insert, update) and ``old`` (update, delete) are the
values the row pointed to after and before. For a child or link row they are the root's key (a comment
moved from article 3 to 7 rebuilds both); for a parent or link-target row they are the columns the
relation points to, and the change goes to the fetcher *via* that relation, which resolves it to its
roots (fanout.source.composition_read.root_page, fanout.pipeline.related). A null in a ref points nowhere and
is dropped.
"""

from __future__ import annotations

from typing import Any

from fanout.model.change import (
    Change,
    ChangeValidationError,
    KeyValue,
    describe,
    field_name,
    key_value,
    validate_key,
    validate_timestamp,
)
from fanout.model.composition import Composition, Feed, ManyToMany, Parent
from fanout.model.mapping import ACTIONS, Mappings, TableMapping

MAX_REFS = 32


def feeds_of(mappings: Mappings, table: str) -> list[tuple[TableMapping, Feed]]:
    """Every (root mapping, feed) through which ``table`` feeds a document."""
    found: list[tuple[TableMapping, Feed]] = []
    for mapping in mappings.tables.values():
        if mapping.composition is not None:
            found.extend((mapping, feed) for feed in mapping.composition.feeds() if feed.table == table)
    return found


def validate_reference(columns: tuple[tuple[str, str], ...], raw: Any, field: str) -> tuple[tuple[str, KeyValue], ...]:
    """The referenced columns' values (a parent's or a link target's), in the relation's column order, each of
    the column's declared type (``types`` of the relation, fanout.model.composition), as a root key's are."""
    names = [column for column, _ in columns]
    if not isinstance(raw, dict) or set(raw) != set(names):
        got = describe(raw) if not isinstance(raw, dict) else str([field_name(k) for k in list(raw)[:8]])
        raise ChangeValidationError(field, f"must have exactly the columns {names}", got)
    return tuple((column, key_value(raw[column], kind, f"{field}.{column}")) for column, kind in columns)


def referenced_columns(composition: Composition, via: str) -> tuple[tuple[str, str], ...] | None:
    """(column, type) of the columns a change *via* this relation names (None: no parent or many-to-many of
    that name)."""
    relation = next((r for r in composition.relations if r.name == via), None)
    if isinstance(relation, (Parent, ManyToMany)):
        return relation.typed_reference
    return None


def parse_related_payload(payload: dict[str, Any], mappings: Mappings, correlation_id: str = "") -> list[Change]:
    """The changes a feeding table's payload stands for: root changes, and changes via a relation."""
    version = payload.get("v")
    if type(version) is not int or version != 1:
        raise ChangeValidationError("v", "unsupported format version (expected 1)", describe(version))
    extra = sorted(set(payload) - {"v", "action", "table", "refs", "ts"}, key=str)
    if extra:
        raise ChangeValidationError(field_name(extra[0]), "unknown field", log_field="<unknown field>")
    table = payload.get("table")
    if not isinstance(table, str):
        raise ChangeValidationError("table", "must be a string", describe(table))
    feeds = feeds_of(mappings, table)
    if not feeds:
        raise ChangeValidationError("table", "feeds no document of the mapping", describe(table))
    action = payload.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise ChangeValidationError("action", f"must be one of {list(ACTIONS)}", describe(action))
    changed_at = validate_timestamp(payload.get("ts"), "ts")
    refs = payload.get("refs")
    if not isinstance(refs, list) or not 1 <= len(refs) <= MAX_REFS:
        raise ChangeValidationError("refs", f"must be a list of 1 to {MAX_REFS} references", describe(refs))
    sides = {"insert": ("new",), "update": ("new", "old"), "delete": ("old",)}[action]
    changes: dict[tuple[str, str, tuple[tuple[str, KeyValue], ...]], Change] = {}
    for i, ref in enumerate(refs):
        where = f"refs[{i}]"
        if not isinstance(ref, dict) or set(ref) != {"root", "via", *sides}:
            raise ChangeValidationError(where, f"must be an object of root, via and {' and '.join(sides)}")
        match = [(m, f) for m, f in feeds if m.table == ref["root"] and f.relation == ref["via"]]
        if not match:
            raise ChangeValidationError(f"{where}.via", f"{table!r} feeds no such relation", describe(ref["via"]))
        mapping, feed = match[0]
        for side in sides:
            raw = ref[side]
            if isinstance(raw, dict) and any(value is None for value in raw.values()):
                continue  # a null reference points at no row
            if feed.names_roots:  # the root's key, in root key column names
                key = validate_key(mapping, raw, f"{where}.{side}")
                change = Change(mapping.table, key, "update", changed_at, correlation_id)
            else:
                assert mapping.composition is not None  # feeds_of found it there
                typed = referenced_columns(mapping.composition, feed.relation)
                assert typed is not None  # a parent or target feed names a parent or many-to-many relation
                key = validate_reference(typed, raw, f"{where}.{side}")
                change = Change(mapping.table, key, "update", changed_at, correlation_id, via=feed.relation)
            changes.setdefault((mapping.table, change.via, key), change)
    return list(changes.values())
