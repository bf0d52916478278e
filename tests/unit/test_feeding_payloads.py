"""Payloads of tables feeding composed documents, as the drainer reads them from the change log and the fetcher
receives them (events/ files).

A reference that points at no row (a comment whose ``article_id`` is NULL) is valid and names no document;
a reference's value is typed against its column, as a root key's is, so "7abc" is not 7 and
"1 OR 1=1" is not an id.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fanout.model.change import ChangeValidationError
from fanout.model.mapping import MappingError, default_mappings, parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.pipeline.fetch_queue import parse_fetcher_event
from tests.support.fakes import RecordingReject, load_event, load_record_body
from tests.support.files import ROOT

MAPPINGS = default_mappings()
CORRELATION_ID = "req-0001"


def test_a_comment_without_an_article_is_valid_and_names_no_document() -> None:
    # Given the payload the comments trigger logs for a comment whose article_id is NULL
    # When the drainer reads it, Then it is valid and changes no document: nothing is handed on, nothing rejected
    assert parse_trigger_payload(load_event("comment_without_article.json"), MAPPINGS, CORRELATION_ID) == []


def test_a_comment_moved_off_its_article_rebuilds_the_article_it_left() -> None:
    [change] = parse_trigger_payload(load_event("comment_moved_off_its_article.json"), MAPPINGS, CORRELATION_ID)

    assert (change.table, change.key, change.via) == ("articles", (("id", 3),), "")


def test_a_reference_that_is_not_of_its_columns_type_is_rejected_like_a_bad_root_key() -> None:
    # Given an author's payload whose reference is the string "7abc" for an integer column
    event = load_event("author_reference_not_an_integer.json")

    # When the drainer reads it, Then it is refused with the reason a bad root key gets (MySQL would read it as 7)
    with pytest.raises(ChangeValidationError) as refused:
        parse_trigger_payload(event, MAPPINGS, CORRELATION_ID)
    assert str(refused.value) == "refs[0].new.id: must be an integer, got '7abc'"


def test_a_change_via_a_relation_carrying_sql_text_for_an_integer_is_rejected_by_the_fetcher() -> None:
    # Given a fetch-queue message whose change via the author relation carries "1 OR 1=1" as the author's id
    event = load_record_body("fetcher_via_reference_not_an_integer.json")
    reject = RecordingReject()

    # When the fetcher validates it
    changes, rejected = parse_fetcher_event(event, MAPPINGS, reject, CORRELATION_ID)

    # Then it is recorded with its reason and nothing is read
    assert (changes, rejected) == ([], 1)
    [rejection] = reject.rejections
    assert rejection.reason == "changes[0].pk.id: must be an integer, got '1 OR 1=1'"


def articles_with_author_types(types: Any) -> dict[str, Any]:
    document = copy.deepcopy(load_bundled_articles())
    document["document"]["parents"][0]["types"] = types
    return {"tables": {"articles": document}}


def load_bundled_articles() -> dict[str, Any]:
    tables = json.loads((ROOT / "layers" / "common" / "fanout" / "tables.json").read_text(encoding="utf-8"))
    return dict(tables["tables"]["articles"])


def test_a_declared_string_reference_takes_strings_only() -> None:
    # Given the author relation declared with a string key
    mappings = parse_mappings(articles_with_author_types({"id": "string"}))

    def renamed(value: Any) -> dict[str, Any]:
        ref = {"root": "articles", "via": "author", "new": {"id": value}, "old": {"id": value}}
        return {"v": 1, "action": "update", "table": "authors", "ts": 1764240000.5, "refs": [ref]}

    # Then a string is a reference, an integer is not
    (change,) = parse_trigger_payload(renamed("acme"), mappings)
    assert (change.key, change.via) == ((("id", "acme"),), "author")
    with pytest.raises(ChangeValidationError) as caught:
        parse_trigger_payload(renamed(7), mappings)
    assert (caught.value.field, caught.value.reason) == ("refs[0].new.id", "must be a string")


@pytest.mark.parametrize(
    ("types", "says"),
    [
        ({"name": "int"}, "document.parents[0].types: 'name' is not one of the referenced columns ['id']"),
        ({"id": "uuid"}, "document.parents[0].types.id: 'uuid' is not one of ['int', 'string']"),
        (["int"], "document.parents[0].types: must be an object"),
    ],
)
def test_a_wrong_reference_type_declaration_names_the_field(types: Any, says: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_mappings(articles_with_author_types(types))
    assert says.split(": ", 1)[1] in str(caught.value) and "parents[0].types" in str(caught.value)
