"""tables.schema.json: generated from the loader's own schema, kept up to date, and tables.json passes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema.validators import Draft202012Validator

from fanout.model.mapping import DEFAULT_MAPPING_FILE, MappingError, parse_mappings
from fanout.model.mapping_schema import SCHEMA, SCHEMA_FILE, inlined, main


def test_the_schema_file_is_what_the_loader_checks_against(tmp_path: Path) -> None:
    # Given the schema written afresh from the module the loader uses
    fresh = tmp_path / "tables.schema.json"
    main(["mapping_schema", str(fresh)])

    # Then the committed file is byte for byte that (else: make schema)
    assert SCHEMA_FILE.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8")


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_the_bundled_mapping_names_the_schema_and_validates_against_it() -> None:
    document = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))

    assert (DEFAULT_MAPPING_FILE.parent / document["$schema"]).resolve() == SCHEMA_FILE
    assert list(Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))).iter_errors(document)) == []


def test_a_field_the_schema_refuses_is_refused_by_the_loader_with_its_table_and_field() -> None:
    # Given the bundled mapping with one sink setting of the wrong type
    document = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    document["tables"]["tenant_settings"]["dynamodb"]["binary"] = "hex"
    assert list(Draft202012Validator(SCHEMA).iter_errors(document))  # editors see it too

    # When / Then the loader names the table, the field and the value
    with pytest.raises(MappingError) as caught:
        parse_mappings(document)
    assert str(caught.value) == (
        "table mapping for 'tenant_settings', field 'dynamodb.binary': "
        "'hex' is not one of ['binary', 'base64', 'exclude']"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("opensearch", {"enabled": True, "colour": "red"}), "field 'opensearch.colour': unknown field (known: "),
        (("primary_key", [{"type": "int"}]), "field 'primary_key[0].column': is required"),
        (("json_columns", "value"), "field 'json_columns': must be a list, got 'value'"),
        (("opensearch", {"rename": {"bad name": "x"}}), "field 'opensearch.rename.bad name': 'bad name' is not"),
        (("dynamodb", {"table": "x"}), "field 'dynamodb.table': 'x' is not a valid DynamoDB table name (or null)"),
    ],
)
def test_each_schema_error_names_the_field_precisely(change: tuple[str, object], expected: str) -> None:
    document = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    field, value = change
    document["tables"]["posts"][field] = value

    with pytest.raises(MappingError) as caught:
        parse_mappings(document)
    assert str(caught.value).startswith(f"table mapping for 'posts', {expected}")


def test_a_top_level_field_other_than_tables_and_schema_is_refused() -> None:
    document = {"tables": {"posts": {"primary_key": [{"column": "id"}]}}, "tabels": {}}

    with pytest.raises(MappingError, match=r"field 'tabels': unknown field \(known: \$schema, tables\)"):
        parse_mappings(document)


def test_each_sink_section_is_typed_with_its_defaults() -> None:
    # Given the bundled mapping's tenant_settings, whose sections are partly written out
    mappings = parse_mappings(json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8")))
    settings = mappings.tables["tenant_settings"]

    # Then each section holds what was written and the defaults of what was not
    assert (settings.opensearch.index, settings.opensearch.binary) == ("tenant-settings", "base64")
    assert settings.opensearch.field("description") == "summary" and settings.opensearch.exclude == {"secret_hash"}
    assert settings.dynamodb.table is None and settings.dynamodb.sort_key is None
    assert settings.dynamodb.partition_key.value.text == "{table}#{tenant}#{setting_key}"
    assert settings.dynamodb.key_attributes == {"pk"} and "_version" in settings.dynamodb.reserved_attributes


def test_of_several_problems_the_first_by_path_is_reported_list_items_by_index() -> None:
    # Given a key whose 3rd and 11th columns are both wrong (as text, "10" sorts before "2")
    key = [{"column": f"c{i}"} for i in range(11)]
    key[2] = {"column": "c2", "type": "uuid"}
    key[10] = {"column": "c10", "type": "uuid"}
    document = {"tables": {"wide": {"primary_key": key}}}

    # When / Then the 3rd is reported, every time
    with pytest.raises(MappingError, match=r"field 'primary_key\[2\]\.type': 'uuid' is not one of"):
        parse_mappings(document)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: d["filter"].update(op="like"), "document.filter.op", "'like' is not one of"),
        (lambda d: d["filter"].update(op="in"), "document.filter", "'in' and 'not in' take 'values'"),
        (lambda d: d["children"][0].update(limit=10_001), "document.children[0].limit", "10001 must be from 1 to"),
        (lambda d: d["many_to_many"][0].update(fields=["name", "id"]), "document.many_to_many[0].fields",
         "a list of values takes exactly one field"),
        (lambda d: d["parents"][0]["on"].update({"author id": "id"}), "document.parents[0].on.author id",
         "'author id' is not a plain SQL identifier"),
        (lambda d: d["dynamodb"].update(shape="flat"), "document.dynamodb.shape", "unknown field"),
    ],
)  # fmt: skip
def test_a_composed_documents_wrong_field_is_the_schemas_to_find(change: Any, field: str, reason: str) -> None:
    # Given the bundled mapping with one mistake in a composed document's declaration
    document = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    change(document["tables"]["articles"]["document"])

    # Then the schema file editors use finds it too
    editor = Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    assert {error.absolute_path[2] for error in editor.iter_errors(document)} == {"document"}

    # And the loader names the table, the field and the reason
    with pytest.raises(MappingError) as caught:
        parse_mappings(document)
    assert str(caught.value).startswith(f"table mapping for 'articles', field {field!r}: {reason}")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: None,
        lambda d: d["tables"]["posts"]["opensearch"].update(index="Not An Index", colour="red"),
        lambda d: d["tables"]["articles"]["document"]["filter"].update(op="in"),
        lambda d: d["tables"]["articles"]["document"]["parents"][0]["on"].update({"a b": "c d"}),
        lambda d: d["tables"]["articles"].pop("columns"),
        lambda d: d["tables"].update({"bad name": {"primary_key": []}}),
    ],
)
def test_the_loaders_inlined_schema_finds_what_the_schema_file_finds(change: Any) -> None:
    # Given a mapping, valid or not
    document = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    change(document)

    # Then the schema with its references inlined (what the loader validates with) reports the same errors
    def found(schema: dict[str, Any]) -> list[tuple[str, ...]]:
        errors = Draft202012Validator(schema).iter_errors(document)
        return sorted((str(list(e.absolute_path)), e.validator, e.message) for e in errors)

    assert "$ref" not in json.dumps(inlined(SCHEMA))
    assert found(inlined(SCHEMA)) == found(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
