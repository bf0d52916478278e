"""The change model: trigger payloads and parser-to-fetcher messages, validated against the table mapping."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.capture.ring import is_ring
from fanout.model.change import (
    BIGINT_MIN,
    BIGINT_UNSIGNED_MAX,
    MAX_STRING_KEY_LENGTH,
    MAX_TIMESTAMP_SECONDS,
    Change,
    ChangeValidationError,
    Stage,
)
from fanout.model.mapping import Mappings, default_mappings, parse_mappings
from fanout.model.payloads import MAX_PAYLOAD_BYTES, parse_change_message, parse_trigger_payload
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from tests.support.fakes import EVENTS, load_event, load_record_body

POSTS = default_mappings()
CORRELATION_ID = "req-0001"
PROPERTY_SETTINGS = settings(database=None, derandomize=True, max_examples=300, deadline=None)

# Tables with other key shapes, to exercise what the bundled "posts" (one int key) cannot.
OTHER_TABLES = parse_mappings(
    {
        "tables": {
            "comments": {"primary_key": [{"column": "tenant", "type": "string"}, {"column": "id", "type": "int"}]},
            "tags": {"primary_key": [{"column": "name", "type": "string"}]},
            "pairs": {"primary_key": [{"column": "a", "type": "string"}, {"column": "b", "type": "string"}]},
        }
    }
)


_ABSENT = object()  # an override that removes the field


def posts_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"v": 1, "action": "update", "table": "posts", "pk": {"id": 42}, "ts": 1764240000.5}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not _ABSENT}


def rejection(payload: Any, mappings: Mappings = POSTS) -> ChangeValidationError:
    with pytest.raises(ChangeValidationError) as caught:
        parse_trigger_payload(payload, mappings, CORRELATION_ID)
    return caught.value


# --------------------------------------------------------------------------- the scenario files


def posts_change(key: int, action: str, changed_at_us: int) -> Change:
    return Change("posts", (("id", key),), action, changed_at_us, CORRELATION_ID)


ACCEPTED_EVENTS = {
    "insert.json": [posts_change(1, "insert", 1764240000123456)],
    "update.json": [posts_change(1, "update", 1764240001000001)],  # old_pk == pk: one change
    "update_primary_key.json": [
        posts_change(2, "update", 1764240002500000),  # the new key
        posts_change(1, "update", 1764240002500000),  # the old key, to be found absent
    ],
    "delete.json": [posts_change(1, "delete", 1764240003250000)],
    "update_composite_key.json": [  # tenant_settings: a case-only change of a composite string key
        Change(
            "tenant_settings", (("tenant", "acme/Ünï"), ("setting_key", k)), "update", 1764240003250000, CORRELATION_ID
        )
        for k in ("Locale", "locale")
    ],
    "comment_without_article.json": [],  # the comments trigger's refs for a NULL article_id: no document
    "comment_moved_off_its_article.json": [  # article_id 3 -> NULL: the article it left is rebuilt
        Change("articles", (("id", 3),), "update", 1764240006000000, CORRELATION_ID)
    ],
}
REJECTED_EVENTS = {
    "malformed.json": "pk.id",  # a string where the mapping declares an int key
    "unknown_table.json": "table",
    "author_reference_not_an_integer.json": "refs[0].new.id",  # "7abc" for an integer column
}
NOT_TRIGGER_PAYLOADS = {"env.json"}  # sam local environment, not an event
RINGS = {"ring.json"}  # a change-log trigger's ring: it names no row, it makes the parser drain


def test_every_trigger_event_file_has_an_expectation_here() -> None:
    # Given the scenario files shared with `sam local invoke`
    names = {p.name for p in EVENTS.glob("*.json")}
    trigger_files = {n for n in names if n not in NOT_TRIGGER_PAYLOADS and not n.startswith("fetcher_")}

    # Then each is either expected to parse, expected to be rejected below, or a ring
    assert trigger_files == set(ACCEPTED_EVENTS) | set(REJECTED_EVENTS) | RINGS


def test_the_ring_file_is_a_ring_and_no_per_row_payload() -> None:
    ring = load_event("ring.json")

    assert is_ring(ring)
    assert not any(is_ring(load_event(name)) for name in ACCEPTED_EVENTS)
    with pytest.raises(ChangeValidationError, match="unsupported format version"):
        parse_trigger_payload(ring, default_mappings())


@pytest.mark.parametrize("name", sorted(ACCEPTED_EVENTS))
def test_a_valid_event_file_becomes_its_changes(name: str) -> None:
    # Given a scenario file read by path
    payload = load_event(name)

    # When
    changes = parse_trigger_payload(payload, POSTS, CORRELATION_ID)

    # Then
    assert changes == ACCEPTED_EVENTS[name]


@pytest.mark.parametrize("name", sorted(REJECTED_EVENTS))
def test_an_invalid_event_file_is_rejected_naming_the_field(name: str) -> None:
    error = rejection(load_event(name))

    assert error.field == REJECTED_EVENTS[name]
    assert str(error).startswith(f"{REJECTED_EVENTS[name]}: ")


def test_a_primary_key_change_yields_the_new_key_first_then_the_old_one() -> None:
    # Given an UPDATE that moved row 1 to id 2
    payload = load_event("update_primary_key.json")

    # When
    new, old = parse_trigger_payload(payload, POSTS)

    # Then both are re-read: the new key (present) and the old one (absent, hence deleted)
    assert (new.key_values, old.key_values) == ((2,), (1,))
    assert new.changed_at_us == old.changed_at_us


# --------------------------------------------------------------------------- the timestamp


@pytest.mark.parametrize(
    ("ts", "expected_us"),
    [
        (1764240000.123456, 1764240000123456),
        (1764240001.000001, 1764240001000001),
        (1764240000.999999, 1764240000999999),
        (1764240000, 1764240000000000),
        ("1764240000.000001", 1764240000000001),
        (Decimal("1764240000.654321"), 1764240000654321),
        ("1764240000.1234569", 1764240000123456),  # below a microsecond: truncated, never rounded up
    ],
)
def test_the_timestamp_becomes_exact_microseconds(ts: Any, expected_us: int) -> None:
    [change] = parse_trigger_payload(posts_payload(ts=ts), POSTS)

    assert change.changed_at_us == expected_us


@settings(max_examples=2000)
@given(st.floats(min_value=0, max_value=MAX_TIMESTAMP_SECONDS * 1.01) | st.floats(min_value=1.6e9, max_value=2e9))
def test_a_float_timestamp_is_read_as_exactly_its_decimal_digits(ts: float) -> None:
    # The float path reads repr's digits; it must agree with the Decimal of its text, the rule for every other form
    seconds = Decimal(str(ts))
    if not 0 < seconds < MAX_TIMESTAMP_SECONDS:
        assert rejection(posts_payload(ts=ts)).field == "ts"
        return
    [change] = parse_trigger_payload(posts_payload(ts=ts), POSTS)

    assert change.changed_at_us == int(seconds * 1_000_000)


@pytest.mark.parametrize("ts", [0, -1, 2**53, True, None, "soon", [1764240000], {"s": 1}, float("nan"), _ABSENT])
def test_a_bad_timestamp_is_rejected(ts: Any) -> None:
    assert rejection(posts_payload(ts=ts)).field == "ts"


@pytest.mark.parametrize("ts", ["Infinity", "-Infinity", float("inf"), "1e999999"])
def test_a_non_finite_or_overflowing_timestamp_is_a_validation_error_not_a_crash(ts: Any) -> None:
    # Given a timestamp that is a valid JSON value but not a finite number of seconds
    # ("Infinity" is a plain JSON string; Python's json also reads a bare Infinity as a float)
    payload = posts_payload(ts=ts)

    # When / Then it is rejected like any other bad timestamp, so the parser records it
    # instead of crashing (an uncaught error makes Lambda retry input that can never be valid)
    assert rejection(payload).field == "ts"


# --------------------------------------------------------------------------- the key


@pytest.mark.parametrize("value", [BIGINT_MIN, -1, 0, 2**63 - 1, BIGINT_UNSIGNED_MAX])
def test_integer_keys_across_the_bigint_range_are_accepted(value: int) -> None:
    [change] = parse_trigger_payload(posts_payload(pk={"id": value}), POSTS)

    assert change.key == (("id", value),)


@pytest.mark.parametrize(
    "value",
    [True, False, BIGINT_MIN - 1, BIGINT_UNSIGNED_MAX + 1, 1.0, "1", None, [1]],
    ids=["true", "false", "below-bigint", "above-unsigned-bigint", "float", "string", "null", "list"],
)
def test_an_integer_key_must_be_a_non_bool_int_in_bigint_range(value: Any) -> None:
    error = rejection(posts_payload(pk={"id": value}))

    assert error.field == "pk.id"


def test_a_string_key_of_the_maximum_length_is_accepted_and_one_more_is_not() -> None:
    longest = "x" * MAX_STRING_KEY_LENGTH
    payload = {"v": 1, "action": "insert", "table": "tags", "pk": {"name": longest}, "ts": 1764240000}

    [change] = parse_trigger_payload(payload, OTHER_TABLES)
    assert change.key_values == (longest,)

    error = rejection({**payload, "pk": {"name": longest + "x"}}, OTHER_TABLES)
    assert error.field == "pk.name"


def test_a_string_key_must_be_a_string() -> None:
    error = rejection({"v": 1, "action": "insert", "table": "tags", "pk": {"name": 7}, "ts": 1}, OTHER_TABLES)

    assert error.field == "pk.name"


@pytest.mark.parametrize(
    "pk",
    [{}, {"id": 1, "title": "x"}, {"ID": 1}, [1], 1, None, _ABSENT],
    ids=["empty", "extra-column", "wrong-case", "list", "scalar", "null", "absent"],
)
def test_the_key_must_be_an_object_with_exactly_the_key_columns(pk: Any) -> None:
    assert rejection(posts_payload(pk=pk)).field == "pk"


def test_the_longest_accepted_key_is_kept_under_ids_the_sinks_can_store() -> None:
    # Given the longest string key the model accepts, made of characters that
    # percent-encode to 6 bytes each ("é" is 2 UTF-8 bytes, "%C3%A9"): 3072 bytes encoded
    payload = {"v": 1, "action": "insert", "table": "tags", "pk": {"name": "é" * MAX_STRING_KEY_LENGTH}, "ts": 1}

    # When it is parsed, it is accepted (a key too long for a sink id is not a reason to lose the row)
    [change] = parse_trigger_payload(payload, OTHER_TABLES)

    # Then its ids fit OpenSearch's 512-byte _id and DynamoDB's 2048-byte partition key (bounded ids);
    # otherwise every retry of the fetch would fail the same way and the row could never be replicated
    mapping = OTHER_TABLES.tables["tags"]
    assert len(change.document_id.encode("utf-8")) == 3072
    assert len(opensearch_document_id(mapping, change).encode("utf-8")) <= 512
    assert all(len(v.encode("utf-8")) <= 2048 for v in dynamodb_key(mapping, change).values())


# --------------------------------------------------------------------------- the envelope


@pytest.mark.parametrize("v", [2, 0, "1", True, None, _ABSENT])
def test_only_format_version_1_is_accepted(v: Any) -> None:
    assert rejection(posts_payload(v=v)).field == "v"


@pytest.mark.parametrize("payload", [[], 42, None, True, 1.5], ids=["list", "int", "null", "bool", "float"])
def test_a_payload_that_is_not_an_object_is_rejected(payload: Any) -> None:
    assert rejection(payload).field == "<payload>"


def test_an_unknown_field_is_rejected_by_name() -> None:
    assert rejection(posts_payload(row={"title": "not trusted"})).field == "row"


@pytest.mark.parametrize("table", ["users", "POSTS", 7, None])
def test_an_unmapped_or_non_string_table_is_rejected(table: Any) -> None:
    assert rejection(posts_payload(table=table)).field == "table"


@pytest.mark.parametrize("action", ["upsert", "", 1, None])
def test_an_unknown_action_is_rejected(action: Any) -> None:
    assert rejection(posts_payload(action=action)).field == "action"


def test_the_action_is_case_insensitive_and_normalised() -> None:
    [change] = parse_trigger_payload(posts_payload(action="DELETE"), POSTS)

    assert change.action == "delete"


def test_an_action_the_table_does_not_capture_is_rejected() -> None:
    # Given the original design, which captured only updates and deletes
    mappings = parse_mappings(
        {"tables": {"posts": {"primary_key": [{"column": "id", "type": "int"}], "capture": ["update", "delete"]}}}
    )

    # When / Then an insert is refused, naming the action
    error = rejection(load_event("insert.json"), mappings)
    assert error.field == "action"
    assert "'insert' is not captured" in error.reason
    # and the captured actions still pass
    assert parse_trigger_payload(load_event("delete.json"), mappings)[0].action == "delete"


def test_only_an_update_may_carry_old_pk() -> None:
    assert rejection(posts_payload(action="delete", old_pk={"id": 41})).field == "old_pk"


def test_an_invalid_old_pk_is_rejected_naming_its_column() -> None:
    assert rejection(posts_payload(old_pk={"id": "41"})).field == "old_pk.id"


# --------------------------------------------------------------------------- payloads given as JSON text


def test_a_json_string_payload_parses_like_the_object() -> None:
    payload = load_event("update_primary_key.json")

    assert parse_trigger_payload(json.dumps(payload), POSTS) == parse_trigger_payload(payload, POSTS)
    assert parse_trigger_payload(json.dumps(payload).encode(), POSTS) == parse_trigger_payload(payload, POSTS)


def test_a_string_payload_that_is_not_json_is_rejected() -> None:
    error = rejection('{"v": 1, "action": ')

    assert error.field == "<payload>"
    assert "not valid JSON" in error.reason


def test_an_oversized_string_payload_is_rejected_before_parsing() -> None:
    # Given valid JSON padded past the limit (whitespace is still JSON)
    payload = json.dumps(posts_payload()) + " " * MAX_PAYLOAD_BYTES

    error = rejection(payload)

    assert error.field == "<payload>"
    assert str(MAX_PAYLOAD_BYTES) in error.reason


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v": 1, "table": "\xff"}',  # bytes that are not UTF-8
        "[" * 2000 + "]" * 2000,  # well under the size limit, nested past the JSON decoder's recursion limit
        '{"v": 1, "pk": {"id": ' + "9" * 5000 + "}}",  # an integer past Python's int-parsing digit limit
    ],
    ids=["invalid-utf8-bytes", "deeply-nested", "huge-integer-literal"],
)
def test_undecodable_text_is_a_validation_error_not_a_crash(payload: str | bytes) -> None:
    assert rejection(payload).field == "<payload>"


# --------------------------------------------------------------------------- parser -> fetcher message


@pytest.mark.parametrize("name", sorted(ACCEPTED_EVENTS))
def test_to_message_round_trips_through_json_to_the_same_change(name: str) -> None:
    for change in parse_trigger_payload(load_event(name), POSTS, CORRELATION_ID):
        # When the change crosses the async invoke as JSON
        message = json.loads(json.dumps(change.to_message()))

        # Then the fetcher rebuilds exactly the same change
        assert parse_change_message(message, POSTS) == change


def test_the_fetcher_sample_event_is_a_valid_message() -> None:
    [message] = load_record_body("fetcher_update.json")["changes"]

    change = parse_change_message(message, POSTS)

    assert change == Change("posts", (("id", 1),), "update", 1764240001000001, "sample-correlation-id")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ts_us": 1764240000.5}, "ts_us"),
        ({"ts_us": True}, "ts_us"),
        ({"ts_us": 0}, "ts_us"),
        ({"correlation_id": "x" * 129}, "correlation_id"),
        ({"correlation_id": 7}, "correlation_id"),
        ({"correlation_id": 'req 1\n{"forged": true}'}, "correlation_id"),  # it goes on every log line
        ({"correlation_id": "\ud800"}, "correlation_id"),
        ({"ts": 1764240000}, "ts"),  # the trigger's field is not the message's
        ({"pk": {"id": "1"}}, "pk.id"),
    ],
)
def test_an_invalid_change_message_is_rejected_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    message = {**load_record_body("fetcher_update.json")["changes"][0], **overrides}

    with pytest.raises(ChangeValidationError) as caught:
        parse_change_message(message, POSTS)

    assert caught.value.field == field


# --------------------------------------------------------------------------- document ids


def keyed(table: str, *key: tuple[str, Any]) -> Change:
    return Change(table, tuple(key), "update", 1764240000000000)


def test_a_composite_key_is_percent_encoded_and_joined_in_key_order() -> None:
    payload = {"v": 1, "action": "update", "table": "comments", "pk": {"id": 7, "tenant": "acme/eu west"}, "ts": 1}

    [change] = parse_trigger_payload(payload, OTHER_TABLES)

    assert change.key == (("tenant", "acme/eu west"), ("id", 7))  # the mapping's order, not the payload's
    assert change.document_id == "acme%2Feu%20west|7"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (keyed("tags", ("name", "a|b")), keyed("pairs", ("a", "a"), ("b", "b"))),
        (keyed("pairs", ("a", "a|b"), ("b", "c")), keyed("pairs", ("a", "a"), ("b", "b|c"))),
        (keyed("tags", ("name", "50%")), keyed("tags", ("name", "50%25"))),
    ],
)
def test_distinct_keys_never_share_a_document_id(one: Change, other: Change) -> None:
    assert one.document_id != other.document_id


@PROPERTY_SETTINGS
@given(st.tuples(st.text(), st.text()), st.tuples(st.text(), st.text()))
def test_document_ids_of_composite_keys_are_injective(one: tuple[str, str], other: tuple[str, str]) -> None:
    first = keyed("pairs", ("a", one[0]), ("b", one[1]))
    second = keyed("pairs", ("a", other[0]), ("b", other[1]))

    assert (first.document_id == second.document_id) == (one == other)


# --------------------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
numeric_text = st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{1,9})?([eE][-+]?[0-9]{1,7})?", fullmatch=True)
near_valid_payloads = st.fixed_dictionaries(
    {},
    optional={
        "v": st.just(1) | json_values,
        "action": st.sampled_from(["insert", "update", "delete", "UPDATE"]) | json_values,
        "table": st.just("posts") | json_values,
        "pk": st.fixed_dictionaries({"id": st.integers()}) | json_values,
        "old_pk": st.none() | st.fixed_dictionaries({"id": st.integers()}) | json_values,
        "ts": st.floats(allow_nan=False, allow_infinity=False) | st.integers() | numeric_text | json_values,
    },
)


@PROPERTY_SETTINGS
@given(json_values | near_valid_payloads)
def test_any_json_value_either_parses_or_is_a_validation_error(payload: Any) -> None:
    try:
        changes = parse_trigger_payload(payload, POSTS)
    except ChangeValidationError as exc:
        assert exc.field
        return
    assert 1 <= len(changes) <= 2
    assert all(c.table == "posts" and 0 < c.changed_at_us < 2**53 for c in changes)


@PROPERTY_SETTINGS
@given(st.text(max_size=200) | json_values.map(json.dumps))
def test_any_text_either_parses_or_is_a_validation_error(text: str) -> None:
    try:
        changes = parse_trigger_payload(text, POSTS)
    except ChangeValidationError as exc:
        assert exc.field
        return
    assert all(c.table == "posts" for c in changes)


@PROPERTY_SETTINGS
@given(
    tenant=st.text(max_size=MAX_STRING_KEY_LENGTH),
    key=st.integers(BIGINT_MIN, BIGINT_UNSIGNED_MAX),
    ts=st.integers(1, 2**53 - 1),
    correlation_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=128),
)
def test_any_valid_change_round_trips_through_its_message(tenant: str, key: int, ts: int, correlation_id: str) -> None:
    change = Change("comments", (("tenant", tenant), ("id", key)), "insert", ts, correlation_id)

    assert parse_change_message(json.loads(json.dumps(change.to_message())), OTHER_TABLES) == change


@pytest.mark.parametrize(
    "t",
    [
        {"fetched": 1_764_240_000_000_000},  # the fetcher's own stage never comes on the wire
        {"rung": "soon"},
        {"handed": True},
        {"drained": 2**53},
        {"queued": 1_764_240_000_000_000},  # a stage of a later version (a rolling deploy)
        [1, 2],
    ],
)
def test_stage_times_that_are_not_ours_are_left_out_and_never_cost_the_change(t: Any) -> None:
    # Given a message whose informational stage times are not ours, beside a good one
    good = {"rung": 1_764_240_000_100_000} if isinstance(t, dict) else {}
    message = Change("posts", (("id", 1),), "update", 1_764_240_000_000_000, "c").to_message()
    message["t"] = {**t, **good} if isinstance(t, dict) else t
    # When it is read, the change is applied as ever, with only the good times
    read = parse_change_message(message, default_mappings())
    assert read == Change("posts", (("id", 1),), "update", 1_764_240_000_000_000, "c")
    assert dict(read.stages) == {Stage(name): at for name, at in good.items()}


def test_stage_times_travel_in_the_message_but_do_not_make_two_changes_different() -> None:

    plain = Change("posts", (("id", 1),), "update", 1_764_240_000_000_000, "c")
    stamped = plain.stamped(Stage.DRAINED, 1_764_240_000_500_000).stamped(Stage.FETCHED, 1_764_240_001_000_000)
    read = parse_change_message(stamped.to_message(), default_mappings())
    assert read == plain and dict(read.stages) == {Stage.DRAINED: 1_764_240_000_500_000}
    assert stamped.stamped(Stage.DRAINED, 1).stages == stamped.stages  # the first time a stage was passed stays


def test_a_stamped_change_is_a_new_change_and_the_one_it_came_from_keeps_its_stages() -> None:
    plain = Change("posts", (("id", 7),), "update", 1_764_240_000_000_000, "c", via="", after=())
    assert plain.document_id == "7"  # its cached views computed before it is stamped

    stamped = plain.stamped(Stage.RUNG, 1_764_240_000_100_000)

    assert plain.stages == () and stamped.stages == ((Stage.RUNG, 1_764_240_000_100_000),)
    assert stamped == plain and stamped is not plain
    assert (stamped.table, stamped.key, stamped.document_id, stamped.key_values) == ("posts", (("id", 7),), "7", (7,))
    with pytest.raises(AttributeError):
        stamped.table = "other"  # type: ignore[misc]  # still frozen
