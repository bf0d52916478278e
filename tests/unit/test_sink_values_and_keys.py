"""Numbers at DynamoDB's edges, JSON decimals and keys longer than a sink id (issue 15, "Values and keys").

No network: the values are built with the fetcher's own builders and read back
the way boto3 reads what DynamoDB returns (numbers as plain digits).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fanout.model.change import Change
from fanout.model.mapping import FULL_KEY_FIELD, parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.model.sink_keys import (
    UnrepresentableRow,
    dynamodb_item_key,
    dynamodb_key,
    opensearch_document_id,
    opensearch_key,
)
from fanout.sinks.dynamodb import attribute_value, attribute_values, dynamodb_item, to_dynamodb_value
from fanout.sinks.opensearch import ExactJSONSerializer, OpenSearchSink, opensearch_document, to_json_value
from fanout.source.rows import JsonText, RowState
from tests.support.fakes import FakeOpenSearch

MAPPINGS = parse_mappings(
    {
        "tables": {
            "cjk": {"primary_key": [{"column": "name", "type": "string"}]},
            "pairs": {
                "primary_key": [{"column": "a", "type": "string"}, {"column": "b", "type": "string"}],
                "dynamodb": {
                    "table": "own",
                    "partition_key": {"attribute": "p", "value": "{a}"},
                    "sort_key": {"attribute": "s", "value": "{b}"},
                },
            },
        }
    }
)
CJK = MAPPINGS.tables["cjk"]
PAIRS = MAPPINGS.tables["pairs"]


def dynamodb_plain_digits(value: Decimal) -> str:
    """How DynamoDB hands a stored number back: plain digits, no exponent, no trailing fractional zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@pytest.mark.parametrize(
    ("value", "stored_as"),
    [
        (Decimal("1E-130"), "N"),  # DynamoDB's smallest magnitude
        (Decimal("-1E-130"), "N"),
        (Decimal("1E-131"), "S"),  # below it: DynamoDB answers "Number underflow"
        (Decimal("-1E-131"), "S"),
        (Decimal("9.9999999999999999999999999999999999999E+37"), "N"),  # 38 digits, below 1e38
        (Decimal(10**38 - 1), "N"),
        (Decimal("1E+38"), "S"),  # DynamoDB takes it, but returns 39 digits that boto3 cannot read
        (Decimal("-1E+38"), "S"),
        (Decimal("9.9999999999999999999999999999999999999E+125"), "S"),  # DynamoDB's largest, unreadable too
        (Decimal("1E+126"), "S"),  # above it: DynamoDB answers "Number overflow"
        (Decimal("1.2345678901234567890123456789012345678"), "N"),  # 38 significant digits
        (Decimal("1.23456789012345678901234567890123456789"), "S"),  # 39
        (Decimal(0), "N"),
    ],
    ids=str,
)
def test_a_number_is_n_only_within_dynamodbs_bounds_and_what_boto3_reads_back(value: Decimal, stored_as: str) -> None:
    # When the value is mapped for DynamoDB
    mapped = to_dynamodb_value(value)

    # Then it is N (a Decimal) inside the bounds, else the exact digits as S
    if stored_as == "S":
        assert mapped == str(value)
        return
    assert isinstance(mapped, Decimal) and mapped == value
    # and boto3 both writes it and reads back what DynamoDB returns for it
    assert TypeSerializer().serialize(mapped) == {"N": str(mapped)}
    assert TypeDeserializer().deserialize({"N": dynamodb_plain_digits(mapped)}) == value


@pytest.mark.parametrize("value", [1e38, 1.5e100, 1e126, 1e-131, -1e300])
def test_doubles_beyond_the_readable_range_are_exact_strings(value: float) -> None:
    assert to_dynamodb_value(value) == str(Decimal(repr(value)))


def test_a_json_decimal_keeps_every_digit_in_both_sinks() -> None:
    # Given JSON text (a TEXT column listed in json_columns) holding a number with more digits than a double
    text = JsonText('{"pi": 3.141592653589793238462643383279, "n": 12345678901234567890, "x": 1.5}')

    # When it is mapped for OpenSearch and serialised as the sink's client sends it
    sent = ExactJSONSerializer().dumps({"c": to_json_value(text)})

    # Then the JSON number is written with all its digits (no float on the way), as DynamoDB gets it
    assert sent == '{"c":{"pi":3.141592653589793238462643383279,"n":12345678901234567890,"x":1.5}}'
    assert to_dynamodb_value(text)["pi"] == Decimal("3.141592653589793238462643383279")
    # and reading it back gives the same digits
    assert ExactJSONSerializer().loads(sent)["c"]["pi"] == Decimal("3.141592653589793238462643383279")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.text() | st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
MYSQL_VALUES = (
    st.none()
    | st.booleans()
    | st.text()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.binary()
    | st.frozensets(st.text(min_size=1), max_size=4)
    | st.builds(lambda v: JsonText(json.dumps(v)), JSON_VALUES)
)


@settings(max_examples=300)
@given(MYSQL_VALUES)
def test_the_sinks_attribute_values_are_what_boto3s_serialiser_writes(value: Any) -> None:
    # Given a MySQL value as the DynamoDB item holds it
    try:
        mapped = to_dynamodb_value(value)
    except UnrepresentableRow:  # a JSON object with an empty key: the sink refuses the row
        assume(False)
        raise
    # When the sink turns it into the low-level client's attribute value, Then it is exactly boto3's form
    assert attribute_value(mapped) == TypeSerializer().serialize(mapped)


def test_an_item_is_serialised_attribute_by_attribute() -> None:
    item = dynamodb_item(CJK, cjk_change("k"), {"name": "k", "n": 7, "blob": b"\x00", "tags": {"b", "a"}}, 3)
    assert attribute_values(item) == {name: TypeSerializer().serialize(value) for name, value in item.items()}
    assert attribute_values(item)["tags"] == {"L": [{"S": "a"}, {"S": "b"}]}
    with pytest.raises(TypeError, match="float"):
        attribute_value(1.5)  # never a float: to_dynamodb_value makes numbers Decimal first


def cjk_change(name: str) -> Change:
    return Change("cjk", (("name", name),), "insert", 1)


def test_a_60_character_cjk_key_is_accepted_and_gets_a_bounded_id_that_keeps_the_full_key() -> None:
    # Given a key of 60 CJK characters (a VARCHAR(64)): 540 bytes once percent-encoded
    name = "漢" * 60
    payload = {"v": 1, "action": "insert", "table": "cjk", "pk": {"name": name}, "ts": 1}

    # When the parser validates it
    [change] = parse_trigger_payload(payload, MAPPINGS)

    # Then the row has an OpenSearch id within 512 bytes, readable at the start, versioned and hashed
    doc_id = opensearch_document_id(CJK, change)
    full = change.document_id
    assert len(full.encode()) == 540
    assert len(doc_id.encode()) <= 512 and doc_id.startswith(full[:100]) and "{v1-sha256:" in doc_id
    # the document keeps the full key, and reconcile reads the key back from it
    document = opensearch_document(CJK, {"name": name, "note": "n"})
    assert document[FULL_KEY_FIELD] == full
    assert opensearch_key(CJK, doc_id, document[FULL_KEY_FIELD]) == (name,)
    # an id that claims the full key of another row is not that row's
    assert opensearch_key(CJK, doc_id, cjk_change("漢" * 59 + "字").document_id) is None


def test_long_keys_sharing_a_prefix_get_different_ids_and_short_keys_keep_theirs() -> None:
    one, two = "漢" * 59 + "字", "漢" * 60
    assert opensearch_document_id(CJK, cjk_change(one)) != opensearch_document_id(CJK, cjk_change(two))
    # a key that fits keeps its plain id and the document gets no extra field
    assert opensearch_document_id(CJK, cjk_change("漢" * 10)) == cjk_change("漢" * 10).document_id
    assert FULL_KEY_FIELD not in opensearch_document(CJK, {"name": "漢" * 10})


def test_a_composite_key_longer_than_dynamodbs_key_limits_is_bounded_per_attribute() -> None:
    # Given two VARCHAR(255) values of 4-byte characters: 3060 bytes each once encoded
    a, b = "😀" * 255, "😀" * 254 + "x"
    change = Change("pairs", (("a", a), ("b", b)), "insert", 1)

    # When the item is built
    key = dynamodb_key(PAIRS, change)
    item: dict[str, Any] = dynamodb_item(PAIRS, change, {"a": a, "b": b}, version=1)

    # Then each key attribute fits its limit (partition 2048, sort 1024 bytes), the full values are kept
    assert len(key["p"].encode()) <= 2048 and len(key["s"].encode()) <= 1024
    assert item[FULL_KEY_FIELD] == {"p": change.document_id.split("|")[0], "s": change.document_id.split("|")[1]}
    # and reconcile parses the item back to the source key
    assert dynamodb_item_key(PAIRS, item) == (a, b)
    assert len(opensearch_document_id(PAIRS, change).encode()) <= 512


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=512), st.text(min_size=1, max_size=512))
def test_bounded_ids_read_back_to_their_key_and_never_collide(one: str, other: str) -> None:
    # Given any two string keys (long or short, any characters but lone surrogates)
    assume(one != other and all(_is_text(k) for k in (one, other)))
    first, second = cjk_change(one), cjk_change(other)

    # Then their ids differ, fit OpenSearch, and each reads back to its own key only
    id_one, id_two = opensearch_document_id(CJK, first), opensearch_document_id(CJK, second)
    assert id_one != id_two
    assert len(id_one.encode()) <= 512
    assert opensearch_key(CJK, id_one, first.document_id) == (one,)
    if id_one != first.document_id:  # bounded: the id alone, or with another row's full key, is no key
        assert opensearch_key(CJK, id_one, None) is None
        assert opensearch_key(CJK, id_one, second.document_id) is None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_a_bounded_documents_full_key_is_the_rows_own_when_the_read_matched_another_spelling() -> None:
    # Given a long key changed as "漢…a" whose re-read (a case-insensitive collation) found the row "漢…A"
    opensearch = FakeOpenSearch()
    sink = OpenSearchSink(opensearch)
    changed, stored = "漢" * 60 + "a", "漢" * 60 + "A"
    twin = "漢" * 60 + "b"
    # When both that change and one whose row holds its key exactly are written
    sink.apply_batch(
        CJK,
        [
            (cjk_change(changed), RowState({"name": stored, "note": "n"}, 5)),
            (cjk_change(twin), RowState({"name": twin, "note": "n"}, 5)),
        ],
    )
    # Then each document is under its change's id, and keeps the full key of the row it holds
    first = opensearch.document(CJK.opensearch.index, opensearch_document_id(CJK, cjk_change(changed)))
    second = opensearch.document(CJK.opensearch.index, opensearch_document_id(CJK, cjk_change(twin)))
    assert first is not None and first[FULL_KEY_FIELD] == cjk_change(stored).document_id
    assert second is not None and second[FULL_KEY_FIELD] == cjk_change(twin).document_id
