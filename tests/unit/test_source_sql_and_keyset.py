"""Identifier quoting and keyset bounds: the SQL text every read of the source builds from the mapping."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.model.mapping import parse_mappings
from fanout.source.keyset import (
    KeyRange,
    UnreplicableKey,
    after_key_sql,
    before_key_sql,
    key_bound_params,
    key_change,
    key_changes,
    page_query,
)
from fanout.source.sql import quote_identifier, selected_columns

MAPPINGS = parse_mappings(
    {
        "tables": {
            "order": {"primary_key": [{"column": "tenant", "type": "string"}, {"column": "id", "type": "int"}]},
            "narrow": {"primary_key": [{"column": "id", "type": "int"}], "columns": ["id", "select"]},
        }
    }
)


def test_an_identifier_is_backtick_quoted_and_a_backtick_inside_it_is_doubled() -> None:
    # Given a reserved word and a name holding a backtick
    # When they are quoted
    # Then each is one identifier to the server
    assert quote_identifier("order") == "`order`"
    assert quote_identifier("a`b") == "`a``b`"


def test_a_read_selects_the_mapped_columns_or_every_column() -> None:
    assert selected_columns(MAPPINGS.tables["narrow"]) == "`id`, `select`"
    assert selected_columns(MAPPINGS.tables["order"]) == "*"


def test_a_composite_key_bound_is_spelled_out_with_its_parameters() -> None:
    # Given a two-column key
    columns = ("tenant", "id")
    # Then (tenant, id) > (%s, %s) and (tenant, id) <= (%s, %s) are written column by column
    assert after_key_sql(columns) == "((`tenant` > %s) OR (`tenant` = %s AND `id` > %s))"
    assert after_key_sql(columns, strict=False) == "((`tenant` > %s) OR (`tenant` = %s AND `id` >= %s))"
    assert before_key_sql(columns) == "((`tenant` < %s) OR (`tenant` = %s AND `id` <= %s))"
    assert key_bound_params(("acme", 7)) == ["acme", "acme", 7]


def test_a_page_after_a_key_within_a_range_and_a_filter_is_one_keyset_query() -> None:
    # When a page is asked for after a key, up to an end key, with the operator's filter
    sql, params = page_query(
        MAPPINGS.tables["order"], ("acme", 7), 100, bounds=KeyRange(end=("zeta", 1)), where="id > %s", where_params=(3,)
    )
    # Then it reads the key columns in key order, never with OFFSET, its values all parameters
    assert sql == (
        "SELECT `tenant`, `id` FROM `order` WHERE ((`tenant` > %s) OR (`tenant` = %s AND `id` > %s))"
        " AND ((`tenant` < %s) OR (`tenant` = %s AND `id` <= %s)) AND (id > %s) ORDER BY `tenant`, `id` LIMIT 100"
    )
    assert params == ["acme", "acme", 7, "zeta", "zeta", 1, 3]


def test_keys_become_validated_changes_and_a_key_no_sink_can_take_is_recorded_or_refused() -> None:
    # Given a valid key and one beyond BIGINT UNSIGNED
    mapping = MAPPINGS.tables["narrow"]
    recorded: list[tuple[str, Any, str]] = []

    # When they become changes with a way to record rejects
    changes, rejected = key_changes(mapping, MAPPINGS, [(5,), (2**64,)], "backfill:job", lambda *r: recorded.append(r))

    # Then the valid one is a change the fetcher takes, and the other is recorded once, as its change message
    assert [(c.table, c.key, c.action, c.correlation_id) for c in changes] == [
        ("narrow", (("id", 5),), "update", "backfill:job")
    ]
    assert rejected == 1
    [(reason, payload, correlation_id)] = recorded
    assert reason.startswith("backfill: pk.id") and correlation_id == "backfill:job"
    assert payload == key_change(mapping, (2**64,), payload["ts_us"], "backfill:job").to_message()
    # And without a way to record it, the walk stops naming the key
    with pytest.raises(UnreplicableKey, match=r"narrow key \(18446744073709551616,\) cannot be replicated"):
        key_changes(mapping, MAPPINGS, [(2**64,)], "backfill:job", None)
