"""Composed documents are declared in the mapping and validated at load; every mistake names table and field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fanout.model.change import Change, ChangeValidationError
from fanout.model.composition import EmbeddedList, EmbeddedRow, Feed, OrderBy, OverLimit, RowFilter
from fanout.model.mapping import MappingError, Mappings, parse_mappings
from fanout.model.payloads import parse_change_message, parse_trigger_payload
from fanout.model.sink_keys import UnrepresentableRow
from fanout.sinks.dynamodb import dynamodb_attributes
from fanout.sinks.opensearch import opensearch_document


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
        (lambda d: d["document"]["filter"].update(op="in"), "document.filter", "take 'values'"),
        (lambda d: d["document"]["filter"].update(value={"a": 1}), "document.filter.value", "must be a string"),
        (lambda d: d["document"].update(filter={"column": "status", "op": "is null", "value": 1}), "document.filter",
         "take no value"),
        (lambda d: d["document"]["parents"][0].update(on={"missing": "id"}), "document.parents[0].on",
         "not among the columns read"),
        (lambda d: d["document"]["parents"][0].update(name="title"), "document.parents[0].name", "already a column"),
        (lambda d: d["document"]["parents"][0].update(name="a.b"), "document.parents[0].name", "not a usable"),
        (lambda d: d["document"]["parents"][0].update(table="articles"), "document.parents[0].table", "itself"),
        (lambda d: d["document"]["parents"][0].update(fields=[]), "document.parents[0].fields", "must not be empty"),
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
        (lambda d: d.update(document={}), "document", "must declare a relation or a filter"),
        (lambda d: d.pop("columns"), "columns", "is required when 'document' is declared"),
        (lambda d: d["document"]["parents"][0].update(name="pk"), "document", "reserves"),
    ],
)  # fmt: skip
def test_every_mistake_in_a_document_names_the_table_and_field(change: Any, field: str, says: str) -> None:
    spec = copy.deepcopy(article_spec())
    change(spec)
    message = error_of(spec)
    assert "'articles'" in message and f"field {field!r}" in message and says in message, message


# --------------------------------------------------------------------------- payloads of feeding tables


def article_mappings() -> Mappings:
    return parse_mappings({"tables": {"articles": article_spec()}})


def payload(table: str, action: str, refs: list[Any]) -> dict[str, Any]:
    return {"v": 1, "action": action, "table": table, "refs": refs, "ts": 1764240000.5}


def test_a_moved_child_names_both_roots_and_a_parent_change_goes_via_its_relation() -> None:
    mappings = article_mappings()
    moved = payload("comments", "update", [{"root": "articles", "via": "comments", "new": {"id": 2}, "old": {"id": 1}}])
    assert [(c.table, c.key, c.via) for c in parse_trigger_payload(moved, mappings)] == [
        ("articles", (("id", 2),), ""),
        ("articles", (("id", 1),), ""),
    ]
    renamed = payload("authors", "update", [{"root": "articles", "via": "author", "new": {"id": 5}, "old": {"id": 5}}])
    (change,) = parse_trigger_payload(renamed, mappings)
    assert (change.table, change.key, change.via) == ("articles", (("id", 5),), "author")
    # and the message to the fetcher carries the relation, validated against it
    assert parse_change_message(change.to_message(), mappings) == change


def test_a_null_reference_points_at_no_root() -> None:
    orphan = payload("comments", "insert", [{"root": "articles", "via": "comments", "new": {"id": None}}])
    assert parse_trigger_payload(orphan, article_mappings()) == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (payload("users", "insert", [{"root": "articles", "via": "x", "new": {"id": 1}}]), "table"),
        (payload("comments", "insert", []), "refs"),
        (payload("comments", "insert", [{"root": "articles", "via": "tags", "new": {"id": 1}}]), "refs[0].via"),
        (payload("comments", "update", [{"root": "articles", "via": "comments", "new": {"id": 1}}]), "refs[0]"),
        (payload("comments", "insert", [{"root": "articles", "via": "comments", "new": {"id": "x"}}]),
         "refs[0].new.id"),
        (payload("authors", "insert", [{"root": "articles", "via": "author", "new": {"name": 1}}]), "refs[0].new"),
        (payload("authors", "insert", [{"root": "articles", "via": "author", "new": {"id": [1]}}]),
         "refs[0].new.id"),
        ({**payload("tags", "delete", [{"root": "articles", "via": "tags", "old": {"id": 1}}]), "pk": {}}, "pk"),
    ],
)  # fmt: skip
def test_a_bad_feeding_payload_is_rejected_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ChangeValidationError) as caught:
        parse_trigger_payload(bad, article_mappings())
    assert caught.value.field == field


def test_a_change_via_a_relation_the_root_does_not_have_is_rejected() -> None:
    message = Change("articles", (("id", 1),), "update", 1, via="comments").to_message()
    with pytest.raises(ChangeValidationError, match="via"):
        parse_change_message(message, article_mappings())


def composed_row(comments: Any) -> dict[str, Any]:
    return {
        "id": 1, "title": "t", "status": "published", "author_id": 3,
        "author": EmbeddedRow(name="Ann"), "comments": comments, "tags": EmbeddedList(["red"]),
    }  # fmt: skip


def test_sinks_get_relations_as_objects_and_lists_and_dynamodb_the_document_or_the_root() -> None:
    mapping = article_mappings().tables["articles"]
    row = composed_row(EmbeddedList([EmbeddedRow(body="hi")]))
    assert opensearch_document(mapping, row)["comments"] == [{"body": "hi"}]
    assert dynamodb_attributes(mapping, row)["author"] == {"name": "Ann"}  # "item": "document"
    spec = article_spec()
    spec["document"]["dynamodb"] = {"item": "root"}
    root_only = parse_mappings({"tables": {"articles": spec}}).tables["articles"]
    assert set(dynamodb_attributes(root_only, row)) == {"id", "title", "status", "author_id"}


def test_a_list_beyond_its_limit_under_reject_cannot_be_written() -> None:
    mapping = article_mappings().tables["articles"]
    row = composed_row(OverLimit("articles", "comments", 6, 5))
    with pytest.raises(UnrepresentableRow, match="6 entries, above its limit of 5"):
        opensearch_document(mapping, row)
