"""Composed documents: one document built from a root table and the tables around it (issue 16).

(About 420 lines, one module on purpose: the declaration's format, its types and the validation that
names table and field are read together, as in fanout.model.mapping.)

Declared under a root table of the mapping as ``"document"``::

    "articles": {
      "primary_key": [{"column": "id", "type": "int"}],
      "columns": ["id", "title", "status", "author_id"],
      "document": {
        "filter": {"column": "status", "op": "=", "value": "published"},
        "parents": [{"name": "author", "table": "authors", "on": {"author_id": "id"}, "fields": ["name"]}],
        "children": [{"name": "comments", "table": "comments", "on": {"id": "article_id"},
                      "fields": ["body", "created_at"],
                      "order_by": [{"column": "created_at", "direction": "asc"}],
                      "limit": 100, "beyond_limit": "truncate"}],
        "many_to_many": [{"name": "tags", "through": "article_tags", "through_on": {"id": "article_id"},
                          "table": "tags", "on": {"tag_id": "id"}, "fields": ["name"], "as": "values"}],
        "dynamodb": {"item": "root"}
      }
    }

- ``parents`` (many-to-one): ``on`` maps root columns to the parent's columns; the parent's ``fields``
  are embedded as an object (null when no parent row matches).
- ``children`` (one-to-many): ``on`` maps the root's primary key columns (all of them) to the child's
  columns; a list of objects of ``fields``, ordered by ``order_by`` then by every field, then by the
  bytes of those columns (values a collation calls equal, 'Red' and 'red', tie before that): a total
  order, so the same rows always give the same list (fanout.source.composition_read); at most ``limit`` long,
  beyond it ``truncate`` keeps the first ``limit``, ``reject`` refuses the document (recorded like any
  row a sink cannot take).
- ``many_to_many``: ``through_on`` maps the root's primary key columns to the link table's; ``on`` maps
  the link's columns to the target's; ``as`` ``values`` (one field: a list of its values) or
  ``objects``. Same ``order_by``/``limit``/``beyond_limit`` (ordered by the target's fields, their bytes,
  then the target's columns ``on`` names).
- ``filter`` on the root: ``op`` one of :data:`FILTER_OPS`; the value(s) are bound as parameters, the
  column is a validated identifier: no SQL text comes from the mapping. A root that does not pass is
  absent from the sinks (a delete), so one that stops passing is removed and one that starts appears.
- ``dynamodb.item``: ``root`` (the root row's projected columns, as for a plain table) or
  ``document`` (the composed document, relations as maps and lists).

The root keys a child or link row belongs to are carried in its capture payload (so the child side
of ``on`` must name the root's primary key); a parent or link-target row's change is resolved to its
roots by the fetcher (docs/architecture.md, "Composed documents").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fanout.model.mapping_fields import KEY_TYPES, FieldError, column_list, identifier, known_fields

FILTER_OPS = ("=", "!=", "in", "not in", "is null", "is not null")
DIRECTIONS = ("asc", "desc")
BEYOND_LIMIT = ("truncate", "reject")
DYNAMODB_ITEMS = ("root", "document")
DEFAULT_CHILD_LIMIT = 100
MAX_CHILD_LIMIT = 10_000  # a document of more list entries is a search index's problem, not a cap
MAX_FILTER_VALUES = 100

# A relation becomes a field of the document: the same rule as a renamed column (no dots, no metadata).
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_$@][A-Za-z0-9_$@-]{0,254}$")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class RowFilter:
    column: str
    op: str
    values: tuple[Scalar, ...]  # () for is null / is not null; one for = and !=


@dataclass(frozen=True)
class Parent:
    """Many-to-one: the root's ``on`` columns equal the parent's."""

    name: str
    table: str
    on: tuple[tuple[str, str], ...]  # (root column, parent column)
    fields: tuple[str, ...]
    referenced_types: tuple[str, ...] = ()  # the type of each referenced column ("int" when not declared)

    @property
    def referenced(self) -> tuple[str, ...]:
        """The parent's columns a root points to: what a parent change names."""
        return tuple(parent for _, parent in self.on)

    @property
    def typed_reference(self) -> tuple[tuple[str, str], ...]:
        """(column, "int" or "string") of each referenced column: what a change via this relation must carry."""
        return _typed(self.referenced, self.referenced_types)


@dataclass(frozen=True)
class OrderBy:
    column: str
    direction: str


@dataclass(frozen=True)
class Children:
    """One-to-many: the child's ``on`` columns hold the root's primary key."""

    name: str
    table: str
    on: tuple[tuple[str, str], ...]  # (root key column, child column), in the root's key order
    fields: tuple[str, ...]
    order_by: tuple[OrderBy, ...]
    limit: int
    beyond_limit: str


@dataclass(frozen=True)
class ManyToMany:
    """Root → link rows (``through_on``: root key → link column) → target rows (``on``: link → target)."""

    name: str
    through: str
    through_on: tuple[tuple[str, str], ...]  # (root key column, link column), in the root's key order
    table: str
    on: tuple[tuple[str, str], ...]  # (link column, target column)
    fields: tuple[str, ...]
    as_values: bool
    order_by: tuple[OrderBy, ...]
    limit: int
    beyond_limit: str
    referenced_types: tuple[str, ...] = ()  # the type of each referenced column ("int" when not declared)

    @property
    def referenced(self) -> tuple[str, ...]:
        """The target's columns a link row points to: what a target change names."""
        return tuple(target for _, target in self.on)

    @property
    def typed_reference(self) -> tuple[tuple[str, str], ...]:
        """(column, "int" or "string") of each referenced column: what a change via this relation must carry."""
        return _typed(self.referenced, self.referenced_types)


def _typed(columns: tuple[str, ...], types: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(zip(columns, types or ("int",) * len(columns), strict=True))


@dataclass(frozen=True)
class Composition:
    root: str
    root_key: tuple[str, ...]
    filter: RowFilter | None
    parents: tuple[Parent, ...]
    children: tuple[Children, ...]
    many_to_many: tuple[ManyToMany, ...]
    dynamodb_document: bool  # the DynamoDB item is the composed document (else the root row)

    @property
    def relations(self) -> tuple[Parent | Children | ManyToMany, ...]:
        """Every relation, in the order the document holds them: parents, children, many-to-many."""
        return (*self.parents, *self.children, *self.many_to_many)

    @property
    def relation_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.relations)

    def relation(self, name: str) -> Parent | Children | ManyToMany:
        for relation in self.relations:
            if relation.name == name:
                return relation
        raise KeyError(f"{self.root} has no relation {name!r}")

    def feeds(self) -> list[Feed]:
        """Every (table, relation) whose rows this document is built from, besides the root."""
        feeds: list[Feed] = []
        for parent in self.parents:
            feeds.append(Feed(parent.table, self.root, parent.name, "parent", parent.referenced))
        for child in self.children:
            feeds.append(Feed(child.table, self.root, child.name, "child", tuple(c for _, c in child.on)))
        for link in self.many_to_many:
            feeds.append(Feed(link.through, self.root, link.name, "link", tuple(c for _, c in link.through_on)))
            feeds.append(Feed(link.table, self.root, link.name, "target", link.referenced))
        return feeds


@dataclass(frozen=True)
class Feed:
    """A table that feeds a composed document, and the columns its change payload carries.

    ``child``/``link``: the columns hold the root's key (the payload names the roots directly);
    ``parent``/``target``: the columns the relation points to (the fetcher resolves the roots)."""

    table: str
    root: str
    relation: str
    kind: str  # "parent", "child", "link" or "target"
    columns: tuple[str, ...]

    @property
    def names_roots(self) -> bool:
        return self.kind in ("child", "link")


def _object(field: str, value: Any, known: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, "must be an object")
    known_fields(field, value, known)
    missing = sorted(required - set(value))
    if missing:
        raise FieldError(f"{field}.{missing[0]}", "is required")
    return value


def _identifiers(field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FieldError(field, "must be a non-empty list of column names")
    return column_list(field, value, None)


def _join(field: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not value:
        raise FieldError(field, 'must be a non-empty object {"this column": "that column"}')
    return tuple((identifier(f"{field}.{a}", a), identifier(f"{field}.{a}", b)) for a, b in value.items())


def _root_key_join(field: str, value: Any, root_key: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A join from the root's primary key: every key column once, returned in the key's order."""
    pairs = dict(_join(field, value))
    if set(pairs) != set(root_key):
        raise FieldError(field, f"must map exactly the root's primary key columns {list(root_key)}")
    return tuple((column, pairs[column]) for column in root_key)


def _order_and_limit(field: str, spec: dict[str, Any]) -> tuple[tuple[OrderBy, ...], int, str]:
    raw = spec.get("order_by", [])
    if not isinstance(raw, list):
        raise FieldError(f"{field}.order_by", "must be a list of {column, direction}")
    order: list[OrderBy] = []
    for i, item in enumerate(raw):
        where = f"{field}.order_by[{i}]"
        item = _object(where, item, {"column", "direction"}, {"column"})
        direction = item.get("direction", "asc")
        if direction not in DIRECTIONS:
            raise FieldError(f"{where}.direction", f"{direction!r} is not one of {list(DIRECTIONS)}")
        order.append(OrderBy(identifier(f"{where}.column", item["column"]), direction))
    limit = spec.get("limit", DEFAULT_CHILD_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CHILD_LIMIT:
        raise FieldError(f"{field}.limit", f"{limit!r} must be an integer from 1 to {MAX_CHILD_LIMIT}")
    beyond = spec.get("beyond_limit", "truncate")
    if beyond not in BEYOND_LIMIT:
        raise FieldError(f"{field}.beyond_limit", f"{beyond!r} is not one of {list(BEYOND_LIMIT)}")
    return tuple(order), limit, str(beyond)


def _reference_types(field: str, value: Any, referenced: tuple[str, ...]) -> tuple[str, ...]:
    """``{"<referenced column>": "int" | "string"}``, each column "int" unless declared (as a primary key column's
    type): the type a change via the relation must give that column's value."""
    if value is None:
        return ("int",) * len(referenced)
    if not isinstance(value, dict):
        raise FieldError(field, 'must be an object {"referenced column": "int" or "string"}')
    unknown = sorted(set(value) - set(referenced), key=str)
    if unknown:
        raise FieldError(field, f"{unknown[0]!r} is not one of the referenced columns {list(referenced)}")
    for column, kind in value.items():
        if kind not in KEY_TYPES:
            raise FieldError(f"{field}.{column}", f"{kind!r} is not one of {list(KEY_TYPES)}")
    return tuple(str(value.get(column, "int")) for column in referenced)


def _scalar(field: str, value: Any) -> Scalar:
    if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > 1024):
        raise FieldError(field, f"{value!r} must be a string (at most 1024 characters), number or boolean")
    return value


def _filter(spec: Any) -> RowFilter:
    spec = _object("document.filter", spec, {"column", "op", "value", "values"}, {"column", "op"})
    column = identifier("document.filter.column", spec["column"])
    op = spec["op"]
    if op not in FILTER_OPS:
        raise FieldError("document.filter.op", f"{op!r} is not one of {list(FILTER_OPS)}")
    if op in ("is null", "is not null"):
        if "value" in spec or "values" in spec:
            raise FieldError("document.filter", f"{op!r} takes no value")
        return RowFilter(column, op, ())
    if op in ("in", "not in"):
        values = spec.get("values")
        if "value" in spec or not isinstance(values, list) or not 1 <= len(values) <= MAX_FILTER_VALUES:
            raise FieldError("document.filter.values", f"{op!r} takes 'values': a list of 1 to "
                        f"{MAX_FILTER_VALUES} values")  # fmt: skip
        return RowFilter(column, op, tuple(_scalar(f"document.filter.values[{i}]", v)
                                            for i, v in enumerate(values)))  # fmt: skip
    if "values" in spec or "value" not in spec:
        raise FieldError("document.filter.value", f"{op!r} takes one 'value'")
    return RowFilter(column, op, (_scalar("document.filter.value", spec["value"]),))


def parse_composition(table: str, spec: Any, root_key: tuple[str, ...], columns: tuple[str, ...] | None) -> Composition:
    """Validate a root table's ``document`` declaration; an error names the field (a :class:`FieldError`, which
    the mapping's parser turns into a ``MappingError`` naming the table too, as for every other field)."""
    spec = _object("document", spec, {"filter", "parents", "children", "many_to_many", "dynamodb"}, set())
    if columns is None:
        raise FieldError("columns", "a document root must list its columns, so relations cannot collide with them")
    names: dict[str, str] = {column: "a column" for column in columns}

    def relation_name(field: str, value: Any) -> str:
        if not isinstance(value, str) or not _FIELD_NAME.match(value) or value.startswith("_"):
            raise FieldError(field, f"{value!r} is not a usable field name (no dots, not starting with '_')")
        if value in names:
            raise FieldError(field, f"{value!r} is already {names[value]} of the document")
        names[value] = "a relation"
        return value

    def related_table(field: str, value: Any) -> str:
        name = identifier(field, value)
        if name == table:
            raise FieldError(field, "a document cannot relate its root table to itself")
        return name

    def relation_list(field: str) -> list[Any]:
        value = spec.get(field, [])
        if not isinstance(value, list):
            raise FieldError(f"document.{field}", "must be a list")
        return value

    parents: list[Parent] = []
    for i, raw in enumerate(relation_list("parents")):
        where = f"document.parents[{i}]"
        raw = _object(where, raw, {"name", "table", "on", "fields", "types"}, {"name", "table", "on", "fields"})
        on = _join(f"{where}.on", raw["on"])
        unread = [root for root, _ in on if root not in columns]
        if unread:
            raise FieldError(f"{where}.on", f"root columns {unread} are not among the columns read ('columns')")
        parents.append(
            Parent(
                relation_name(f"{where}.name", raw["name"]),
                related_table(f"{where}.table", raw["table"]),
                on,
                _identifiers(f"{where}.fields", raw["fields"]),
                _reference_types(f"{where}.types", raw.get("types"), tuple(parent for _, parent in on)),
            )
        )
    children: list[Children] = []
    for i, raw in enumerate(relation_list("children")):
        where = f"document.children[{i}]"
        raw = _object(
            where,
            raw,
            {"name", "table", "on", "fields", "order_by", "limit", "beyond_limit"},
            {"name", "table", "on", "fields"},
        )
        order, limit, beyond = _order_and_limit(where, raw)
        children.append(
            Children(
                relation_name(f"{where}.name", raw["name"]),
                related_table(f"{where}.table", raw["table"]),
                _root_key_join(f"{where}.on", raw["on"], root_key),
                _identifiers(f"{where}.fields", raw["fields"]),
                order,
                limit,
                beyond,
            )
        )
    links: list[ManyToMany] = []
    for i, raw in enumerate(relation_list("many_to_many")):
        where = f"document.many_to_many[{i}]"
        raw = _object(
            where,
            raw,
            {"name", "through", "through_on", "table", "on", "fields", "as", "order_by", "limit", "beyond_limit"}
            | {"types"},
            {"name", "through", "through_on", "table", "on", "fields"},
        )
        order, limit, beyond = _order_and_limit(where, raw)
        fields = _identifiers(f"{where}.fields", raw["fields"])
        shape = raw.get("as", "values" if len(fields) == 1 else "objects")
        if shape not in ("values", "objects"):
            raise FieldError(f"{where}.as", f"{shape!r} is not one of ['values', 'objects']")
        if shape == "values" and len(fields) != 1:
            raise FieldError(f"{where}.fields", "a list of values takes exactly one field")
        through = related_table(f"{where}.through", raw["through"])
        target = related_table(f"{where}.table", raw["table"])
        if through == target:
            raise FieldError(f"{where}.through", "the link table must differ from the target table")
        on = _join(f"{where}.on", raw["on"])
        links.append(
            ManyToMany(
                relation_name(f"{where}.name", raw["name"]),
                through,
                _root_key_join(f"{where}.through_on", raw["through_on"], root_key),
                target,
                on,
                fields,
                shape == "values",
                order,
                limit,
                beyond,
                _reference_types(f"{where}.types", raw.get("types"), tuple(t for _, t in on)),
            )
        )
    row_filter = _filter(spec["filter"]) if "filter" in spec else None
    dynamodb = _object("document.dynamodb", spec.get("dynamodb", {}), {"item"}, set())
    item = dynamodb.get("item", "root")
    if item not in DYNAMODB_ITEMS:
        raise FieldError("document.dynamodb.item", f"{item!r} is not one of {list(DYNAMODB_ITEMS)}")
    composition = Composition(
        table, root_key, row_filter, tuple(parents), tuple(children), tuple(links), item == "document"
    )
    if not composition.relation_names and row_filter is None:
        raise FieldError("document", "declares no relation and no filter")
    return composition


@dataclass(frozen=True)
class OverLimit:
    """A relation with more entries than its ``limit`` under ``beyond_limit: reject``: the document cannot be
    written (the sinks refuse it as a row they can never take, recorded in the dead-letter queue)."""

    root: str
    relation: str
    count: int
    limit: int

    @property
    def reason(self) -> str:
        return (
            f"relation {self.relation!r} of {self.root} has {self.count} entries, above its limit of {self.limit} "
            "(beyond_limit: reject)"
        )


class EmbeddedRow(dict[str, Any]):
    """A related row inside a composed document (a parent, or a child or target object). Its own type, so
    that a plain dict from anywhere else is still no sink value."""


class EmbeddedList(list[Any]):
    """A relation's list inside a composed document (children, or many-to-many values or objects)."""
