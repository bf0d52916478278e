"""Composed documents are declared in the mapping and validated at load; every mistake names table and field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fanout.model.composition import Feed, OrderBy, RowFilter
from fanout.model.mapping import MappingError, parse_mappings


def article_spec() -> dict[str, Any]:
    return {
        "primary_key": [{"column": "id", "type": "int"}],
        "columns": ["id", "title", "status", "author_id"],
        "document": {
            "filter": {"column": "status", "op": "=", "value": "published"},
            "parents": [{"name": "author", "table": "authors", "on": {"author_id": "id"}, "fields": ["name"]}],
            "children": [
                {
                    "name": "comments",
                    "table": "comments",
                    "on": {"id": "article_id"},
                    "fields": ["body", "created_at"],
                    "order_by": [{"column": "created_at", "direction": "desc"}],
                    "limit": 5,
                    "beyond_limit": "reject",
                }
            ],
            "many_to_many": [
                {
                    "name": "tags",
                    "through": "article_tags",
                    "through_on": {"id": "article_id"},
                    "table": "tags",
                    "on": {"tag_id": "id"},
                    "fields": ["name"],
                }
            ],
            "dynamodb": {"item": "document"},
        },
    }


def error_of(spec: dict[str, Any]) -> str:
    with pytest.raises(MappingError) as caught:
        parse_mappings({"tables": {"articles": spec}})
    return str(caught.value)


def test_a_declared_document_is_parsed_with_every_relation_kind() -> None:
    # Given a root with a filter, a parent, children and a many-to-many relation
    mapping = parse_mappings({"tables": {"articles": article_spec()}}).tables["articles"]

    # Then the composition says what to read and what feeds it
    composition = mapping.composition
    assert composition is not None
    assert composition.filter == RowFilter("status", "=", ("published",))
    assert composition.parents[0].on == (("author_id", "id"),)
    child = composition.children[0]
    assert (child.order_by, child.limit, child.beyond_limit) == ((OrderBy("created_at", "desc"),), 5, "reject")
    assert composition.many_to_many[0].as_values  # one field: a list of values by default
    assert composition.dynamodb_document
    assert composition.feeds() == [
        Feed("authors", "articles", "author", "parent", ("id",)),
        Feed("comments", "articles", "comments", "child", ("article_id",)),
        Feed("article_tags", "articles", "tags", "link", ("article_id",)),
        Feed("tags", "articles", "tags", "target", ("id",)),
    ]


def test_a_table_without_a_document_has_no_composition() -> None:
    spec = article_spec()
    del spec["document"]
    assert parse_mappings({"tables": {"articles": spec}}).tables["articles"].composition is None


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda d: d["document"]["filter"].update(op="like"), "document.filter.op", "not one of"),
        (lambda d: d["document"]["filter"].update(column="status; DROP TABLE x"), "document.filter.column",
         "not a plain SQL identifier"),
        (lambda d: d["document"]["filter"].update(op="in"), "document.filter.values", "takes 'values'"),
        (lambda d: d["document"]["filter"].update(value={"a": 1}), "document.filter.value", "must be a string"),
        (lambda d: d["document"].update(filter={"column": "status", "op": "is null", "value": 1}), "document.filter",
         "takes no value"),
        (lambda d: d["document"]["parents"][0].update(on={"missing": "id"}), "document.parents[0].on",
         "not among the columns read"),
        (lambda d: d["document"]["parents"][0].update(name="title"), "document.parents[0].name", "already a column"),
        (lambda d: d["document"]["parents"][0].update(name="a.b"), "document.parents[0].name", "not a usable"),
        (lambda d: d["document"]["parents"][0].update(table="articles"), "document.parents[0].table", "itself"),
        (lambda d: d["document"]["parents"][0].update(fields=[]), "document.parents[0].fields", "non-empty"),
        (lambda d: d["document"]["parents"][0].update(extra=1), "document.parents[0].extra", "unknown field"),
        (lambda d: d["document"]["children"][0].update(on={"title": "article_id"}), "document.children[0].on",
         "primary key"),
        (lambda d: d["document"]["children"][0].update(limit=0), "document.children[0].limit", "from 1 to"),
        (lambda d: d["document"]["children"][0].update(beyond_limit="drop"), "document.children[0].beyond_limit",
         "not one of"),
        (lambda d: d["document"]["children"][0]["order_by"][0].update(direction="up"),
         "document.children[0].order_by[0].direction", "not one of"),
        (lambda d: d["document"]["children"][0].update(name="author"), "document.children[0].name",
         "already a relation"),
        (lambda d: d["document"]["many_to_many"][0].update(fields=["name", "slug"], **{"as": "values"}),
         "document.many_to_many[0].fields", "exactly one field"),
        (lambda d: d["document"]["many_to_many"][0].update(through="tags"), "document.many_to_many[0].through",
         "must differ"),
        (lambda d: d["document"]["dynamodb"].update(item="both"), "document.dynamodb.item", "not one of"),
        (lambda d: d.update(document={}), "document", "declares no relation"),
        (lambda d: d.pop("columns"), "columns", "must list its columns"),
        (lambda d: d["document"]["parents"][0].update(name="pk"), "document", "reserves"),
    ],
)  # fmt: skip
def test_every_mistake_in_a_document_names_the_table_and_field(change: Any, field: str, says: str) -> None:
    spec = copy.deepcopy(article_spec())
    change(spec)
    message = error_of(spec)
    assert "'articles'" in message and f"field {field!r}" in message and says in message, message
