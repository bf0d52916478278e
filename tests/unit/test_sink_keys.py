"""Sink keys read back into source keys: the inverse of the mapping's key formats."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import dynamodb_item_key, dynamodb_key, opensearch_document_id, opensearch_key

MAPPINGS = default_mappings()
POSTS = MAPPINGS.tables["posts"]
SETTINGS = MAPPINGS.tables["tenant_settings"]


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_an_int_key_round_trips_through_both_sinks(value: int) -> None:
    change = Change("posts", (("id", value),), "update", 1)
    assert opensearch_key(POSTS, opensearch_document_id(POSTS, change)) == (value,)
    assert dynamodb_item_key(POSTS, dynamodb_key(POSTS, change)) == (value,)


@given(st.text(min_size=0, max_size=20), st.text(min_size=0, max_size=20))
def test_a_composite_string_key_round_trips_whatever_its_characters(tenant: str, key: str) -> None:
    change = Change("tenant_settings", (("tenant", tenant), ("setting_key", key)), "update", 1)
    assert opensearch_key(SETTINGS, opensearch_document_id(SETTINGS, change)) == (tenant, key)
    assert dynamodb_item_key(SETTINGS, dynamodb_key(SETTINGS, change)) == (tenant, key)


def test_text_that_no_key_renders_to_is_no_key() -> None:
    assert opensearch_key(POSTS, "not-a-key") is None
    assert opensearch_key(POSTS, "007") is None  # 7 renders as "7"
    assert opensearch_key(POSTS, "1|2") is None  # one key column, not two
    assert opensearch_key(SETTINGS, "acme") is None  # no separator
    assert dynamodb_item_key(POSTS, {"pk": "tenant_settings#1"}) is None  # another table's prefix
    assert dynamodb_item_key(POSTS, {"pk": 5}) is None
    assert dynamodb_item_key(SETTINGS, {"pk": "tenant_settings#a#b#c"}) is None  # '#' is never in a value
