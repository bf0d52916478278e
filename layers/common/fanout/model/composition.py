"""Composed documents: one document built from a root table and the tables around it (issue 16).

The declaration's shape is the JSON Schema in :mod:`fanout.model.composition_schema` (part of
``tables.schema.json``); this module holds its types and checks what a schema cannot say.

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
- ``filter`` on the root: ``op`` one of :data:`fanout.model.composition_schema.FILTER_OPS`; the value(s) are
  bound as parameters, the column is a validated identifier: no SQL text comes from the mapping. A root that
  does not pass is absent from the sinks (a delete), so one that stops passing is removed and one that starts
  appears.
- ``dynamodb.item``: ``root`` (the root row's projected columns, as for a plain table) or
  ``document`` (the composed document, relations as maps and lists).

The root keys a child or link row belongs to are carried in its capture payload (so the child side
of ``on`` must name the root's primary key); a parent or link-target row's change is resolved to its
roots by the fetcher (docs/architecture.md, "Composed documents").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fanout.model.composition_schema import DEFAULT_CHILD_LIMIT
from fanout.model.mapping_fields import FieldError

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


def _root_key_join(field: str, value: dict[str, str], root_key: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A join from the root's primary key: every key column once, returned in the key's order."""
    if set(value) != set(root_key):
        raise FieldError(field, f"must map exactly the root's primary key columns {list(root_key)}")
    return tuple((column, value[column]) for column in root_key)


def _order_and_limit(spec: dict[str, Any]) -> tuple[tuple[OrderBy, ...], int, str]:
    order = tuple(OrderBy(item["column"], item.get("direction", "asc")) for item in spec.get("order_by", []))
    return order, spec.get("limit", DEFAULT_CHILD_LIMIT), spec.get("beyond_limit", "truncate")


def _reference_types(field: str, value: dict[str, str] | None, referenced: tuple[str, ...]) -> tuple[str, ...]:
    """``{"<referenced column>": "int" | "string"}``, each column "int" unless declared (as a primary key column's
    type): the type a change via the relation must give that column's value."""
    value = value or {}
    unknown = sorted(set(value) - set(referenced), key=str)
    if unknown:
        raise FieldError(field, f"{unknown[0]!r} is not one of the referenced columns {list(referenced)}")
    return tuple(value.get(column, "int") for column in referenced)


def _filter(spec: dict[str, Any]) -> RowFilter:
    values = spec.get("values", [spec["value"]] if "value" in spec else [])
    return RowFilter(spec["column"], spec["op"], tuple(values))


def parse_composition(
    table: str, spec: dict[str, Any], root_key: tuple[str, ...], columns: tuple[str, ...]
) -> Composition:
    """A root table's ``document`` section, already of the schema's shape (fanout.model.composition_schema):
    what a schema cannot say, the references to other fields and tables. An error names the field (a
    :class:`FieldError`, which the mapping's parser turns into a ``MappingError`` naming the table too)."""
    names: dict[str, str] = {column: "a column" for column in columns}

    def relation_name(field: str, value: str) -> str:
        if value in names:
            raise FieldError(field, f"{value!r} is already {names[value]} of the document")
        names[value] = "a relation"
        return value

    def related_table(field: str, value: str) -> str:
        if value == table:
            raise FieldError(field, "a document cannot relate its root table to itself")
        return value

    parents: list[Parent] = []
    for i, raw in enumerate(spec.get("parents", [])):
        where = f"document.parents[{i}]"
        on = tuple(raw["on"].items())
        unread = [root for root, _ in on if root not in columns]
        if unread:
            raise FieldError(f"{where}.on", f"root columns {unread} are not among the columns read ('columns')")
        parents.append(
            Parent(
                relation_name(f"{where}.name", raw["name"]),
                related_table(f"{where}.table", raw["table"]),
                on,
                tuple(raw["fields"]),
                _reference_types(f"{where}.types", raw.get("types"), tuple(parent for _, parent in on)),
            )
        )
    children: list[Children] = []
    for i, raw in enumerate(spec.get("children", [])):
        where = f"document.children[{i}]"
        children.append(
            Children(
                relation_name(f"{where}.name", raw["name"]),
                related_table(f"{where}.table", raw["table"]),
                _root_key_join(f"{where}.on", raw["on"], root_key),
                tuple(raw["fields"]),
                *_order_and_limit(raw),
            )
        )
    links: list[ManyToMany] = []
    for i, raw in enumerate(spec.get("many_to_many", [])):
        where = f"document.many_to_many[{i}]"
        fields = tuple(raw["fields"])
        through = related_table(f"{where}.through", raw["through"])
        target = related_table(f"{where}.table", raw["table"])
        if through == target:
            raise FieldError(f"{where}.through", "the link table must differ from the target table")
        on = tuple(raw["on"].items())
        links.append(
            ManyToMany(
                relation_name(f"{where}.name", raw["name"]),
                through,
                _root_key_join(f"{where}.through_on", raw["through_on"], root_key),
                target,
                on,
                fields,
                raw.get("as", "values" if len(fields) == 1 else "objects") == "values",
                *_order_and_limit(raw),
                _reference_types(f"{where}.types", raw.get("types"), tuple(t for _, t in on)),
            )
        )
    row_filter = _filter(spec["filter"]) if "filter" in spec else None
    document_item = spec.get("dynamodb", {}).get("item", "root") == "document"
    return Composition(table, root_key, row_filter, tuple(parents), tuple(children), tuple(links), document_item)


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
