"""The table mapping: the bundled file loads, and every mistake in a mapping is named by table and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fanout.model.mapping import DEFAULT_MAPPING_FILE, KeyColumn, MappingError, load_mappings, parse_mappings


def valid_spec() -> dict[str, Any]:
    return {
        "primary_key": [{"column": "id", "type": "int"}],
        "capture": ["insert", "update", "delete"],
        "columns": ["id", "title"],
        "opensearch": {"enabled": True, "index": "posts"},
        "dynamodb": {"enabled": True},
    }


def mapping_error(spec: Any, table: str = "posts") -> str:
    with pytest.raises(MappingError) as caught:
        parse_mappings({"tables": {table: spec}})
    return str(caught.value)


def test_the_bundled_mapping_loads_and_describes_posts() -> None:
    # Given no FANOUT_MAPPING_FILE, the file shipped in the layer is used
    mappings = load_mappings(DEFAULT_MAPPING_FILE)

    posts = mappings.get("posts")
    assert posts is not None
    assert posts.primary_key == (KeyColumn("id", "int"),)
    assert posts.capture == frozenset({"insert", "update", "delete"})
    assert posts.columns is not None and "id" in posts.columns
    assert (posts.opensearch.enabled, posts.opensearch.index, posts.dynamodb.enabled) == (True, "posts", True)
    assert mappings.get("users") is None


def test_defaults_capture_everything_and_index_under_the_lowercased_table_name() -> None:
    mappings = parse_mappings({"tables": {"Posts": {"primary_key": [{"column": "id"}]}}})

    posts = mappings.get("Posts")
    assert posts is not None
    assert posts.primary_key == (KeyColumn("id", "int"),)
    assert posts.capture == frozenset({"insert", "update", "delete"})
    assert posts.columns is None  # every column of the row
    assert (posts.opensearch.index, posts.opensearch.enabled, posts.dynamodb.enabled) == ("posts", True, True)


def with_change(path: str, value: Any) -> dict[str, Any]:
    """A valid spec with one field replaced (dotted path; a trailing [i] indexes a list)."""
    spec = valid_spec()
    *parents, last = path.split(".")
    target: Any = spec
    for name in parents:
        target = target[name]
    target[last] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (with_change("primary_key", []), "primary_key"),
        (with_change("primary_key", "id"), "primary_key"),
        (with_change("primary_key", [{"column": "id; DROP TABLE posts", "type": "int"}]), "primary_key[0].column"),
        (with_change("primary_key", [{"column": "id", "type": "uuid"}]), "primary_key[0].type"),
        (with_change("primary_key", [{"column": "id"}, {"column": "id", "type": "string"}]), "primary_key"),
        (with_change("primary_key", ["id"]), "primary_key[0]"),
        ({**valid_spec(), "colums": ["id"]}, "colums"),
        (with_change("capture", ["insert", "upsert"]), "capture[1]"),
        (with_change("capture", []), "capture"),
        (with_change("capture", "update"), "capture"),
        (with_change("columns", ["title", "body"]), "columns"),
        (with_change("columns", []), "columns"),
        (with_change("columns", ["id", "title`"]), "columns[1]"),
        (with_change("opensearch.index", "Posts"), "opensearch.index"),
        (with_change("opensearch.index", "_posts"), "opensearch.index"),
        (with_change("opensearch.index", "posts*"), "opensearch.index"),
        (with_change("opensearch", "posts"), "opensearch"),
        (with_change("columns", ["id", "_version"]), "columns"),
        (with_change("columns", ["id", "pk"]), "columns"),
        (with_change("opensearch.enabled", "yes"), "opensearch.enabled"),
        (with_change("dynamodb.enabled", 1), "dynamodb.enabled"),
    ],
    ids=[
        "empty-primary-key",
        "primary-key-not-a-list",
        "key-column-not-an-identifier",
        "unknown-key-type",
        "duplicate-key-column",
        "key-entry-not-an-object",
        "unknown-field",
        "capture-with-bad-action",
        "capture-empty",
        "capture-not-a-list",
        "columns-missing-the-key",
        "columns-empty",
        "column-not-an-identifier",
        "uppercase-index-name",
        "index-name-starting-with-underscore",
        "index-name-with-wildcard",
        "opensearch-not-an-object",
        "reserved-version-attribute-as-column",
        "reserved-pk-attribute-as-column",
        "opensearch-enabled-not-bool",
        "dynamodb-enabled-not-bool",
    ],
)
def test_each_mistake_is_reported_naming_the_table_and_the_field(spec: dict[str, Any], field: str) -> None:
    message = mapping_error(spec)

    assert "'posts'" in message
    assert f"field {field!r}" in message


@pytest.mark.parametrize("table", ["posts-2024", "1posts", "posts; DROP TABLE x", "p" * 65, ""])
def test_a_table_name_that_is_not_a_plain_identifier_is_rejected(table: str) -> None:
    message = mapping_error(valid_spec(), table=table)

    assert repr(table) in message
    assert "<table name>" in message


def test_a_reserved_attribute_is_allowed_as_a_column_when_dynamodb_is_off() -> None:
    # Given a column named like a sink attribute, in a table not replicated to DynamoDB
    # (OpenSearch reserves _version too, as a metadata field: there it is renamed)
    spec = with_change("columns", ["id", "_version"])
    spec["dynamodb"] = {"enabled": False}
    spec["opensearch"]["rename"] = {"_version": "row_version"}

    # When / Then nothing clashes
    posts = parse_mappings({"tables": {"posts": spec}}).get("posts")
    assert posts is not None and not posts.dynamodb.enabled


@pytest.mark.parametrize("sink", ["opensearch", "dynamodb"])
def test_a_misspelt_setting_inside_a_sink_is_reported_not_ignored(sink: str) -> None:
    # Given a typo meant to turn a sink off ("enable" for "enabled")
    spec = valid_spec()
    spec[sink] = {"enable": False}

    # When / Then it is refused like a misspelt table field, instead of leaving the sink on
    message = mapping_error(spec)
    assert f"field '{sink}.enable'" in message


@pytest.mark.parametrize("document", [[], {"tables": []}, {"tables": {}}, {"table": {"posts": {}}}, None])
def test_a_document_without_a_tables_object_is_rejected(document: Any) -> None:
    with pytest.raises(MappingError):
        parse_mappings(document)


def test_load_mappings_reads_the_file_named_by_fanout_mapping_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a mapping file elsewhere, named in the environment
    path = tmp_path / "tables.json"
    document = {"tables": {"orders": {"primary_key": [{"column": "order_no", "type": "string"}]}}}
    path.write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setenv("FANOUT_MAPPING_FILE", str(path))

    # When
    mappings = load_mappings()

    # Then it is the one loaded, not the bundled one
    assert set(mappings.tables) == {"orders"}
    orders = mappings.get("orders")
    assert orders is not None and orders.primary_key == (KeyColumn("order_no", "string"),)


def test_an_explicit_path_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_MAPPING_FILE", str(tmp_path / "absent.json"))

    assert load_mappings(DEFAULT_MAPPING_FILE).get("posts") is not None


def test_invalid_json_in_the_mapping_file_is_reported_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tables.json"
    path.write_text('{"tables": {"posts": ', encoding="utf-8")
    monkeypatch.setenv("FANOUT_MAPPING_FILE", str(path))

    with pytest.raises(MappingError) as caught:
        load_mappings()

    assert str(path) in str(caught.value)
    assert "not valid JSON" in str(caught.value)


def test_a_missing_mapping_file_is_reported_with_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nowhere" / "tables.json"
    monkeypatch.setenv("FANOUT_MAPPING_FILE", str(path))

    with pytest.raises(MappingError) as caught:
        load_mappings()

    assert str(path) in str(caught.value)


def test_an_invalid_table_in_the_file_is_reported_by_name(tmp_path: Path) -> None:
    document = {"tables": {"posts": valid_spec(), "orders": copy.deepcopy(valid_spec())}}
    document["tables"]["orders"]["primary_key"][0]["type"] = "float"
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(MappingError, match=r"'orders', field 'primary_key\[0\]\.type'"):
        load_mappings(path)
