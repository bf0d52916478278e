"""The per-sink options of the table mapping: key formats, renames, exclusions, projections, DynamoDB tables."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.model.key_format import parse_key_format
from fanout.model.mapping import (
    DEFAULT_MAPPING_FILE,
    MappingError,
    check_dynamodb_tables,
    load_mappings,
    parse_mappings,
)


def settings_spec() -> dict[str, Any]:
    """A valid composite-string-key mapping using every option."""
    return {
        "primary_key": [{"column": "tenant", "type": "string"}, {"column": "slug", "type": "string"}],
        "columns": ["tenant", "slug", "title", "body", "secret", "doc"],
        "json_columns": ["doc"],
        "opensearch": {
            "index": "settings",
            "document_id": "{tenant}:{slug}",
            "rename": {"body": "text"},
            "exclude": ["secret"],
            "binary": "exclude",
        },
        "dynamodb": {
            "table": "app-settings",
            "partition_key": {"attribute": "tenant_id", "value": "{tenant}"},
            "sort_key": {"attribute": "sk", "value": "setting#{slug}"},
            "attributes": ["title", "doc", "secret"],
            "rename": {"title": "name"},
            "binary": "base64",
        },
    }


def error_for(spec: dict[str, Any], table: str = "settings") -> str:
    with pytest.raises(MappingError) as caught:
        parse_mappings({"tables": {table: spec}})
    return str(caught.value)


def changed(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(settings_spec())
    *parents, last = path.split(".")
    target = spec
    for name in parents:
        target = target[name]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return spec


_DELETE = object()


def test_every_option_is_parsed_into_the_table_mapping() -> None:
    mapping = parse_mappings({"tables": {"settings": settings_spec()}}).tables["settings"]

    assert mapping.key_columns == ("tenant", "slug")
    assert mapping.json_columns == frozenset({"doc"})
    assert mapping.opensearch.document_id.text == "{tenant}:{slug}"
    assert mapping.opensearch.field("body") == "text" and mapping.opensearch.field("title") == "title"
    assert mapping.opensearch.exclude == frozenset({"secret"}) and mapping.opensearch.binary == "exclude"
    assert mapping.dynamodb.table == "app-settings"
    assert mapping.dynamodb.partition_key.attribute == "tenant_id"
    assert mapping.dynamodb.sort_key is not None and mapping.dynamodb.sort_key.value.text == "setting#{slug}"
    assert mapping.dynamodb.attributes == ("title", "doc", "secret")
    assert mapping.dynamodb.attribute("title") == "name" and mapping.dynamodb.binary == "base64"
    assert mapping.dynamodb.reserved_attributes == {
        "tenant_id", "sk", "_table", "_version", "_deleted", "_ttl", "_fanout_key"
    }  # fmt: skip


def test_the_bundled_mapping_declares_a_composite_string_key_table() -> None:
    settings = load_mappings(DEFAULT_MAPPING_FILE).tables["tenant_settings"]

    assert [(k.column, k.type) for k in settings.primary_key] == [("tenant", "string"), ("setting_key", "string")]
    assert settings.opensearch.document_id.render("tenant_settings", settings_key("acme", "a:b")) == "acme:a%3Ab"
    rendered = settings.dynamodb.partition_key.value.render("tenant_settings", settings_key("acme", "dark mode"))
    assert rendered == "tenant_settings#acme#dark%20mode"
    assert "secret_hash" in settings.opensearch.exclude and settings.json_columns == frozenset({"value"})


def settings_key(tenant: str, setting_key: str) -> tuple[tuple[str, Any], ...]:
    return (("tenant", tenant), ("setting_key", setting_key))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (changed("opensearch.document_id", "{tenant}"), "opensearch.document_id"),  # misses slug: collisions
        (changed("opensearch.document_id", "{tenant}{slug}"), "opensearch.document_id"),  # no separator
        (changed("opensearch.document_id", "{tenant}-{slug}"), "opensearch.document_id"),  # '-' is in values
        (changed("opensearch.document_id", "{key}|{tenant}"), "opensearch.document_id"),  # '|' is in {key}
        (changed("opensearch.document_id", "{tenant}:{nope}"), "opensearch.document_id"),
        (changed("opensearch.document_id", "{tenant}:{slug"), "opensearch.document_id"),
        (changed("opensearch.document_id", ""), "opensearch.document_id"),
        (changed("opensearch.exclude", ["missing"]), "opensearch.exclude"),
        (changed("opensearch.rename", {"title": "_id"}), "opensearch.rename.title"),
        (changed("opensearch.rename", {"title": "a.b"}), "opensearch.rename.title"),
        (changed("opensearch.rename", {"title": "body"}), "opensearch.rename"),  # body is a field already
        (changed("opensearch.rename", {"secret": "s"}), "opensearch.rename.secret"),  # excluded anyway
        (changed("opensearch.rename", ["title"]), "opensearch.rename"),
        (changed("opensearch.binary", "hex"), "opensearch.binary"),
        (changed("opensearch.index_mappings", ["doc"]), "opensearch.index_mappings"),
        (changed("opensearch.index_mappings", {"properties": []}), "opensearch.index_mappings.properties"),
        (changed("opensearch.typo", 1), "opensearch.typo"),
        (changed("json_columns", ["nope"]), "json_columns"),
        (changed("dynamodb.table", "a"), "dynamodb.table"),
        (changed("dynamodb.table", None), "dynamodb.partition_key"),  # the ReplicaTable's key is pk alone
        (changed("dynamodb.sort_key", {"attribute": "tenant_id", "value": "{slug}"}), "dynamodb.sort_key.attribute"),
        (changed("dynamodb.sort_key", _DELETE), "dynamodb.partition_key"),  # slug no longer in any key
        (
            changed("dynamodb.partition_key", {"attribute": "_version", "value": "{key}"}),
            "dynamodb.partition_key.attribute",
        ),
        (changed("dynamodb.partition_key", {"attribute": "p", "valu": "{key}"}), "dynamodb.partition_key.valu"),
        (changed("dynamodb.attributes", ["nope"]), "dynamodb.attributes"),
        (changed("dynamodb.attributes", []), "dynamodb.attributes"),
        (changed("dynamodb.rename", {"body": "b"}), "dynamodb.rename.body"),  # body is not projected
        (changed("dynamodb.rename", {"title": "sk"}), "dynamodb.attributes"),  # a key attribute
        (changed("dynamodb.rename", {"title": "doc"}), "dynamodb.attributes"),  # doc is projected too
        (changed("dynamodb.binary", "hex"), "dynamodb.binary"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_mistake_in_the_sink_options_names_the_table_and_field(spec: dict[str, Any], field: str) -> None:
    message = error_for(spec)

    assert "'settings'" in message
    assert f"field {field!r}" in message


@pytest.mark.parametrize(
    "template", ["{tenant}:{slug}", "{table}#{key}", "{key}", "x/{slug}/{tenant}/y", "{tenant}|{slug}", "{key}#{key}"]
)
def test_key_formats_with_unambiguous_separators_are_accepted(template: str) -> None:
    spec = changed("opensearch.document_id", template)

    assert parse_mappings({"tables": {"settings": spec}}).tables["settings"].opensearch.document_id.text == template


key_values = st.tuples(st.text(max_size=6), st.text(max_size=6))


@pytest.mark.parametrize("template", ["{tenant}:{slug}", "{table}#{key}", "{slug}/{tenant}", "{key}"])
@given(first=key_values, second=key_values)
def test_an_accepted_key_format_never_gives_two_keys_the_same_id(
    template: str, first: tuple[str, str], second: tuple[str, str]
) -> None:
    # Given any two different keys (any text: separators, '%', unicode, empty)
    key_format = parse_key_format(template, {"tenant", "slug", "key", "table"}, MappingError)

    def render(values: tuple[str, str]) -> str:
        return key_format.render("settings", (("tenant", values[0]), ("slug", values[1])))

    # Then their ids differ exactly when the keys do
    assert (render(first) == render(second)) == (first == second)


def test_tables_sharing_a_dynamodb_table_must_prefix_their_keys_with_the_table() -> None:
    # Given two tables in the default ReplicaTable, one whose partition key does not start with {table}
    posts = {"primary_key": [{"column": "id"}]}
    tags = {"primary_key": [{"column": "id"}], "dynamodb": {"partition_key": {"value": "{key}#{table}"}}}

    # When / Then (posts#7 and tags' 7#tags could not collide here, but a different format could)
    with pytest.raises(MappingError) as caught:
        parse_mappings({"tables": {"posts": posts, "tags": tags}})
    assert "'tags'" in str(caught.value) and "dynamodb.partition_key.value" in str(caught.value)


def test_a_table_alone_in_its_dynamodb_table_may_use_any_complete_key_format() -> None:
    tags = {
        "primary_key": [{"column": "id"}],
        "dynamodb": {"table": "tags", "partition_key": {"attribute": "id", "value": "{id}"}},
    }

    mapping = parse_mappings({"tables": {"tags": tags, "posts": {"primary_key": [{"column": "id"}]}}}).tables["tags"]
    assert mapping.dynamodb.partition_key.value.render("tags", (("id", 7),)) == "7"


def test_a_dynamodb_table_the_fetcher_was_not_granted_is_refused_naming_table_and_field() -> None:
    mappings = parse_mappings({"tables": {"settings": settings_spec()}})

    check_dynamodb_tables(mappings, {"fanout-replica", "app-settings"})  # granted: fine
    with pytest.raises(MappingError) as caught:
        check_dynamodb_tables(mappings, {"fanout-replica"})
    assert "'settings', field 'dynamodb.table'" in str(caught.value)
    assert "ExtraReplicaTableArns" in str(caught.value)


def test_a_switched_off_sink_needs_no_valid_options_for_it() -> None:
    spec = settings_spec()
    spec["dynamodb"] = {"enabled": False, "table": "app-settings"}

    mappings = parse_mappings({"tables": {"settings": spec}})
    check_dynamodb_tables(mappings, set())  # a disabled sink's table is never used
    assert mappings.dynamodb_tables() == frozenset()
