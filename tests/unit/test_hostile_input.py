"""Hostile input: whatever reaches the parser or the fetcher, nothing crashes, nothing is lost, nothing leaks.

The parser handler (parser_fn/app.py, wrapped in its real observability
decorator) and the fetcher's event parsing and re-read run over in-memory
fakes; hypothesis throws malformed JSON, wrong types, huge and deeply nested
values, unicode edge cases and injection strings at every field. For every
input the tests assert:

- no exception escapes (an escaped error makes Lambda retry input that can never be valid);
- exactly one of: the change is forwarded, or it is rejected *and recorded* in the
  dead-letter queue (the fake SQS refuses what SQS refuses: oversized bodies and
  characters outside the set SQS accepts), with the payload recoverable from the record;
- every log line is one JSON object, and no payload *value* appears in the logs
  (each generated string carries a canary): a log line says which field and why,
  the dead-letter record is the one place the payload is kept;
- every SQL statement the fetcher runs is one of the two fixed statements built
  from the validated mapping, with the key values as bound parameters.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy.exceptions import RequestError
from pymysql.constants import FIELD_TYPE

from fanout.capture.change_log import changes_of_row
from fanout.model.change import Change, ChangeValidationError
from fanout.model.mapping import Mappings, default_mappings, parse_mappings
from fanout.model.payloads import MAX_PAYLOAD_BYTES, parse_trigger_payload
from fanout.observability import logger
from fanout.pipeline.fetch_queue import parse_fetcher_event
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.redaction import describe_error
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink
from fanout.source.reader import DatabaseSource, read_row, select_rows_sql
from fanout.source.rows import CLOCK_SQL, SHARE_NOWAIT, SHARE_SKIP_LOCKED, select_row_sql
from tests.support.fakes import (
    FakeContext,
    FakeOpenSearch,
    FakeSQSClient,
    RecordingReject,
    fake_dynamodb,
    load_app,
    load_event,
)

POSTS = default_mappings()
# A string-keyed and a composite-keyed table: injection strings can then be *valid* keys.
KEYED = parse_mappings(
    {
        "tables": {
            "posts": {"primary_key": [{"column": "id", "type": "int"}]},
            "tags": {"primary_key": [{"column": "name", "type": "string"}]},
            "comments": {"primary_key": [{"column": "tenant", "type": "string"}, {"column": "id", "type": "int"}]},
        }
    }
)
FUZZ = settings(
    database=None,
    derandomize=True,
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CANARY = "CANARY7"  # every generated string value carries it; it must never reach a log line

# --------------------------------------------------------------------------- hostile values

EDGE_TEXT = [
    "\x00",  # NUL
    "\ud800",  # lone high surrogate (JSON allows "\ud800")
    "\udfff",  # lone low surrogate
    "\ufffe\uffff",  # noncharacters SQS refuses
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u061c",  # right-to-left mark, Arabic letter mark
    "e\u0301\u0327\u0338",  # combining marks
    "\U0001f600\U0001f3f3\ufe0f\u200d\U0001f308",  # emoji, ZWJ sequence
    '\r\n{"level": "ERROR", "message": "forged"}',  # log-line forging
    "' OR '1'='1",  # SQL injection
    "1; DROP TABLE posts; --",
    "`posts`; DELETE FROM `posts` WHERE 1=1; -- ",
    "\\' UNION SELECT password FROM mysql.user -- ",
    "%s%s%s%n{0}{__class__}",  # format strings
    "${jndi:ldap://127.0.0.1/a}",
    '{"$ne": null}',  # NoSQL injection
    "../../../../etc/passwd",
    "posts#1|2",  # the sinks' own separators
    "x" * 600,  # longer than a string key may be
]

hostile_text = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),  # surrogates included
    st.text(max_size=40),
).map(lambda s: f"{CANARY}{s}")
huge_text = st.integers(9_000, 300_000).map(lambda n: CANARY + "\U0001f600" * (n // 4))
hostile_numbers = st.one_of(
    st.integers(),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400]),  # past BIGINT
    st.just(5000).map(lambda digits: -(10**digits)),  # past int->str's limit (built lazily: repr() fails)
    st.floats(),  # NaN and infinities included
)
hostile_scalars = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_text)
hostile_values = st.recursive(
    hostile_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=12,
)


def max_decodable_depth() -> int:
    """How deeply nested an event the Lambda runtime's JSON decoder still accepts (it is what delivers events)."""
    low, high = 100, 100_000
    while low < high:
        mid = (low + high + 1) // 2
        try:
            json.loads("[" * mid + "]" * mid)
            low = mid
        except RecursionError:
            high = mid - 1
    return low


DEEPEST = max_decodable_depth()


def nested(depth: int) -> Any:
    value: Any = CANARY
    for i in range(depth):
        value = [value] if i % 2 else {CANARY: value}
    return value


deep_values = st.integers(DEEPEST - 20, DEEPEST).map(lambda d: nested(d - 2))  # -2: room for the envelope
anything = st.one_of(hostile_values, huge_text, deep_values)


def near_valid(mappings_table: str = "posts") -> st.SearchStrategy[dict[str, Any]]:
    """A valid payload with any one field replaced by something hostile, or a hostile field added."""
    base: dict[str, Any] = {"v": 1, "action": "update", "table": mappings_table, "pk": {"id": 42}, "ts": 1764240000.5}
    fields = sorted(base) + ["old_pk", "pk.id", "<extra>"]

    def mutate(field: str, value: Any, extra_name: str) -> dict[str, Any]:
        payload = dict(base)
        if field == "pk.id":
            payload["pk"] = {"id": value}
        elif field == "<extra>":
            payload[extra_name] = value
        else:
            payload[field] = value
        return payload

    return st.builds(mutate, st.sampled_from(fields), anything, hostile_text)


def as_json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        return CANARY + "{not json"


json_texts = st.one_of(
    anything.map(as_json_text),
    near_valid().map(lambda p: as_json_text(p)[: len(as_json_text(p)) // 2]),  # truncated JSON
    st.binary(max_size=200).map(lambda b: b"{" + CANARY.encode() + b),  # bytes, mostly not UTF-8
    st.text(max_size=100).map(lambda t: CANARY + t),
    st.just("[" * 20_000 + "]" * 20_000),  # nested past the decoder, within the size cap? (no: rejected by size)
    st.just("[" * 3000 + "]" * 3000),  # under the size cap, past the decoder's depth
)
trigger_payloads = st.one_of(near_valid(), anything, json_texts)


# --------------------------------------------------------------------------- a change-log row through the drainer

ROW_ID = 7


class DrainerUnderTest:
    """What the drainer does with one claimed log row (fanout.capture.change_log.changes_of_row), its reject
    recorder over a fake queue; logs captured per call."""

    def run(self, payload: Any) -> tuple[list[Change] | None, FakeSQSClient, str, str]:
        sqs = FakeSQSClient()
        reject = QueueRejectRecorder(sqs, "dlq", source="parser")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            changes = changes_of_row(ROW_ID, payload, POSTS, reject, "req-hostile")
        return changes, sqs, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def parser() -> DrainerUnderTest:
    return DrainerUnderTest()


def log_lines(out: str) -> list[dict[str, Any]]:
    lines = [line for line in out.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object: nothing forged, nothing broken
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON (NaN equals itself there), compared by the C encoder: the values may be nested ~1500 deep."""
    return json.dumps(a) == json.dumps(b)


def check_parser_outcome(event: Any, parser: DrainerUnderTest) -> dict[str, Any] | None:
    """Hand the row to the drainer and assert the invariants; return the dead-letter record, if any."""
    # When
    changes, sqs, out, err = parser.run(event)

    # Then it returned (no exception) and the logs are intact JSON lines without payload values
    assert "Logging error" not in err and "Traceback" not in err, err[-2000:]
    lines = log_lines(out)
    assert CANARY not in out, [line for line in out.splitlines() if CANARY in line][:1]

    # and the row's changes were either handed on or it was rejected and recorded, never both, never neither
    if changes is not None:
        assert changes and sqs.messages == []
        for change in changes:
            assert set(change.to_message()) == {"v", "action", "table", "pk", "ts_us", "correlation_id"}
        return None
    [message] = sqs.messages
    assert message["MessageBody"].isascii()
    record = json.loads(message["MessageBody"])
    [rejected] = [line for line in lines if line.get("message") == "change log row rejected"]
    assert rejected["reason"] and rejected["field"] and rejected["field"].isascii() and len(rejected["field"]) <= 64
    assert record["reason"].startswith(f"change log row {ROW_ID}: ")
    reason = record["reason"].removeprefix(f"change log row {ROW_ID}: ")
    if rejected["field"] == "<unknown field>":  # the name the sender chose is in the record only
        assert reason.endswith(": unknown field")
    else:
        assert reason.startswith(rejected["field"] + ": ")
    record["reason"] = reason  # as the tests below compare it
    # and the record keeps the payload: exactly, unless it had to be cut or simplified to fit
    json_native = isinstance(event, dict | list | str | int | float | bool) or event is None
    if json_native and not record["payload_truncated"] and not record.get("payload_simplified"):
        assert same_json(json.loads(record["payload"]), event)
    return record


@FUZZ
@given(trigger_payloads)
def test_any_trigger_payload_is_forwarded_or_recorded_and_its_values_never_logged(
    parser: DrainerUnderTest, event: Any
) -> None:
    check_parser_outcome(event, parser)


@pytest.mark.parametrize("text", EDGE_TEXT, ids=range(len(EDGE_TEXT)))
@pytest.mark.parametrize("field", ["v", "action", "table", "pk", "pk.id", "ts", "old_pk", "<extra>"])
def test_an_edge_case_string_in_any_field_is_rejected_and_recorded_exactly(
    parser: DrainerUnderTest, field: str, text: str
) -> None:
    # Given a valid payload with one field replaced by an edge-case string
    payload: dict[str, Any] = {"v": 1, "action": "update", "table": "posts", "pk": {"id": 42}, "ts": 1764240000.5}
    value = CANARY + text
    if field == "pk.id":
        payload["pk"] = {"id": value}
    elif field == "<extra>":
        payload[value] = 1
    else:
        payload[field] = value

    # When / Then (no field of "posts" takes a string, so every one of these is invalid)
    record = check_parser_outcome(payload, parser)
    assert record is not None
    assert json.loads(record["payload"]) == payload  # lone surrogates and U+FFFF included


def test_the_deepest_event_the_runtime_can_decode_is_rejected_and_recorded(parser: DrainerUnderTest) -> None:
    # Given an event nested as deeply as the JSON decoder that delivers events allows
    # (DEEPEST depends on the stack depth at collection, so its parity varies: the outer list fixes the shape)
    event = {"v": 1, "action": "update", "table": "posts", "pk": [nested(DEEPEST - 3)], "ts": 1764240000}

    # When / Then
    record = check_parser_outcome(event, parser)
    assert record is not None and record["reason"].startswith("pk: must be an object of key columns")


def test_a_payload_too_deep_to_encode_is_still_recorded_with_its_structure_simplified(
    parser: DrainerUnderTest,
) -> None:
    # Given a value nested past what json.dumps can encode (only a caller in the process can build one)
    event = {
        "v": 1,
        "action": "update",
        "table": "posts",
        "pk": {"id": 1},
        "ts": 1,
        "extra": nested(sys.getrecursionlimit() * 20),
    }

    # When / Then: recorded, not crashed; the record says it is not the exact payload
    record = check_parser_outcome(event, parser)
    assert record is not None and record["payload_simplified"] is True
    assert json.loads(record["payload"])["v"] == 1


def test_a_megabyte_event_is_rejected_and_recorded_truncated(parser: DrainerUnderTest) -> None:
    event = {"v": 1, "action": "update", "table": "posts", "pk": {"id": 1}, "ts": 1, "row": CANARY + "é" * 1_000_000}

    record = check_parser_outcome(event, parser)

    assert record is not None and record["payload_truncated"] is True
    assert record["reason"] == "row: unknown field"


def test_a_string_payload_past_the_size_cap_is_rejected_before_it_is_parsed(parser: DrainerUnderTest) -> None:
    text = json.dumps({"v": 1, "action": "update", "table": "posts", "pk": {"id": 1}, "ts": 1})
    record = check_parser_outcome(text + " " * MAX_PAYLOAD_BYTES, parser)
    assert record is not None and "larger than" in record["reason"]


@pytest.mark.parametrize(
    "key",
    ["' OR '1'='1", "1; DROP TABLE tags; --", "\x00", "a\u202eb", "e\u0301", "\U0001f600", "`", "%", "|"],
)
def test_an_injection_string_is_a_valid_string_key_and_only_ever_a_bound_parameter(key: str) -> None:
    # Given a table keyed by a string, and a key made of SQL (or unicode) text
    payload = {"v": 1, "action": "update", "table": "tags", "pk": {"name": key}, "ts": 1764240000}

    # When it is parsed and re-read
    [change] = parse_trigger_payload(payload, KEYED)
    conn = RecordingConnection(rows={("tags", (key,)): {"name": key}})
    state = read_row(conn, KEYED.tables["tags"], change)

    # Then the key is a parameter of a statement built from the mapping alone
    assert state.row == {"name": key}
    assert conn.statements == [
        (CLOCK_SQL, None),
        ("SELECT * FROM `tags` WHERE `name` = %s FOR SHARE", (key,)),
        (CLOCK_SQL, None),
    ]


def test_a_lone_surrogate_string_key_is_rejected_it_names_no_row_mysql_can_store() -> None:
    with pytest.raises(ChangeValidationError) as caught:
        parse_trigger_payload({"v": 1, "action": "update", "table": "tags", "pk": {"name": "\ud800"}, "ts": 1}, KEYED)
    assert caught.value.field == "pk.name" and "lone surrogate" in caught.value.reason


# --------------------------------------------------------------------------- the fetcher: event parsing and SQL


class RecordingCursor:
    def __init__(self, conn: RecordingConnection) -> None:
        self._conn = conn
        self._result: list[tuple[Any, ...]] = []
        self.description: list[tuple[Any, ...]] = []

    def __enter__(self) -> RecordingCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self, sql: str, params: Any = None) -> None:
        self._conn.statements.append((sql, params))
        if sql == CLOCK_SQL:
            self._result = [(1764240000123456,)]
            return
        table = sql.split("FROM `", 1)[1].split("`", 1)[0]
        row = self._conn.rows.get((table, tuple(params)))
        self._result = [] if row is None else [tuple(row.values())]
        # DB-API 2 descriptions are 7-item sequences: name, type_code, display_size, internal_size, ...
        self.description = (
            [] if row is None else [(name, FIELD_TYPE.VAR_STRING, None, None, None, None, True) for name in row]
        )

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._result.pop(0) if self._result else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        result, self._result = self._result, []
        return result


class RecordingConnection:
    """A pymysql connection that records every statement and its parameters, and answers from a dict of rows."""

    open = True

    def __init__(self, rows: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] | None = None) -> None:
        self.rows = rows or {}
        self.statements: list[tuple[str, Any]] = []

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self)

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass


def message_of(table: str, pk: Any, **overrides: Any) -> dict[str, Any]:
    message = {"v": 1, "action": "update", "table": table, "pk": pk, "ts_us": 1764240000000000, "correlation_id": "c"}
    message.update(overrides)
    return message


hostile_messages = st.one_of(
    anything,
    st.builds(message_of, st.sampled_from(["posts", "tags", "comments"]), anything),
    st.builds(lambda name: message_of("tags", {"name": name}), hostile_text),
    st.builds(lambda tenant, key: message_of("comments", {"tenant": tenant, "id": key}), hostile_text, hostile_numbers),
    st.builds(lambda cid: message_of("posts", {"id": 1}, correlation_id=cid), hostile_text),
)
fetcher_events = st.one_of(anything, st.builds(lambda ms: {"changes": ms}, st.lists(hostile_messages, max_size=5)))


def single_reads(mappings: Mappings) -> set[str]:
    return {select_row_sql(m) for m in mappings.tables.values()}


def allowed_statements(mappings: Mappings, most_keys: int = 5) -> set[str]:
    """The clock, each table's single read and its batch reads of up to ``most_keys`` keys (skipping locked rows, and
    of the keys that skipped, not waiting)."""
    batches = {
        select_rows_sql(m, n, lock)
        for m in mappings.tables.values()
        for n in range(1, most_keys + 1)
        for lock in (SHARE_SKIP_LOCKED, SHARE_NOWAIT)
    }
    return {CLOCK_SQL} | single_reads(mappings) | batches


@FUZZ
@given(fetcher_events)
def test_any_fetcher_event_runs_only_the_mappings_statements_with_keys_as_parameters(event: Any) -> None:
    # Given the fetcher's parsing, the real re-read over a recording connection, and the real sinks over fakes
    # (and no correlation id left on the logger by a handler an earlier test ran)
    logger.set_correlation_id(None)
    reject, conn = RecordingReject(), RecordingConnection()
    sinks = [OpenSearchSink(FakeOpenSearch()), DynamoDBSink(*fake_dynamodb(), tombstone_ttl_seconds=3600)]

    # When
    with contextlib.redirect_stdout(io.StringIO()) as out:
        changes, rejected = parse_fetcher_event(event, KEYED, reject, "req-hostile")
        Fetcher(KEYED, DatabaseSource.over(conn), sinks).apply(changes)

    # Then every invalid message was recorded, and no payload value was logged but an accepted change's key
    # and correlation id (validated; they name the row and the change in the log lines, docs/security.md)
    assert rejected == len(reject.rejections)
    accepted = {"key": {c.document_id for c in changes}, "correlation_id": {c.correlation_id for c in changes}}
    for line in log_lines(out.getvalue()):
        assert line.get("key") in accepted["key"] | {None}
        assert line.get("correlation_id") in accepted["correlation_id"] | {"req-hostile", None}
        assert set(line.get("correlation_ids", [])) <= accepted["correlation_id"]  # a coalesced key's changes
        for last in line.get("last_applied", {}).values():  # the batch line's last write of each table
            assert (last["key"], last["correlation_id"]) in {
                (k, c) for k in accepted["key"] for c in accepted["correlation_id"]
            }
        ignored = set(accepted) | {"correlation_ids", "last_applied"}
        assert CANARY not in json.dumps({k: v for k, v in line.items() if k not in ignored})
    # and only the fixed statements ran, each key value a bound parameter of a validated type
    assert {sql for sql, _ in conn.statements} <= allowed_statements(KEYED)
    for sql, params in conn.statements:
        assert CANARY not in sql
        if params is not None:
            assert all(isinstance(p, int | str) and not isinstance(p, bool) for p in params)
    # (none found by the batch read: the keys read once more together, not waiting, one read per table; no writer
    # holds them, so none is read alone)
    singles = single_reads(KEYED)
    assert [s for s, _ in conn.statements if s in singles] == []
    assert len([s for s, _ in conn.statements if s.endswith(SHARE_NOWAIT)]) == len({c.table for c in changes})


def test_a_forged_correlation_id_does_not_reach_the_fetchers_log_lines() -> None:
    app = load_app("fetcher_fn/app.py", "fetcher_app_hostile")
    forged = 'x"}\n{"level":"ERROR","message":"forged"'

    assert app._correlation_id({"changes": [{"correlation_id": forged}]}, FakeContext("own-id")) == "own-id"
    assert app._correlation_id({"changes": [{"correlation_id": "\ud800"}]}, FakeContext("own-id")) == "own-id"
    assert app._correlation_id({"changes": [{"correlation_id": "fallback:17"}]}, FakeContext("own-id")) == "fallback:17"


# --------------------------------------------------------------------------- row data in sink errors


def mapping_error_quoting_the_row(value: str) -> RequestError:
    """What OpenSearch answers when a field does not fit its mapping: the reason quotes the row's value."""
    reason = (
        f"failed to parse field [title] of type [date] in document with id '1'. Preview of field's value: '{value}'"
    )
    cause = {"type": "mapper_parsing_exception", "reason": reason}
    return RequestError(400, "mapper_parsing_exception", {"error": {"root_cause": [cause], **cause}, "status": 400})


def test_a_sink_error_that_quotes_the_row_is_logged_and_raised_without_it() -> None:
    # Given OpenSearch refusing a row, quoting the row's value in its error
    secret = "ROW-SECRET-4242"
    opensearch = FakeOpenSearch()
    opensearch.fail_with = mapping_error_quoting_the_row(secret)
    conn = RecordingConnection(rows={("posts", (1,)): {"id": 1, "title": secret}})
    [change] = parse_trigger_payload(load_event("update.json"), POSTS, "req-1")

    # When the fetch fails
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(FetchFailed) as caught:
        Fetcher(
            POSTS,
            DatabaseSource.over(conn),
            [OpenSearchSink(opensearch), DynamoDBSink(*fake_dynamodb(), tombstone_ttl_seconds=3600)],
        ).apply([change])

    # Then neither the log line nor the raised error (Lambda logs it, and records it on failure) has the value,
    # but both say what failed and why, in a way an operator can act on
    assert secret not in out.getvalue() and secret not in str(caught.value)
    assert secret in str(opensearch.fail_with)  # (the server's own text did quote it)
    # (a mapping refusal is a row the sink can never take: rejected, and with no recorder here, a failure)
    assert "posts/1: opensearch" in str(caught.value)
    assert "mapper_parsing_exception" in str(caught.value)
    [rejected] = [line for line in log_lines(out.getvalue()) if line["message"] == "row rejected by sink"]
    assert "mapper_parsing_exception" in rejected["reason"] and secret not in rejected["reason"]


def test_describe_error_keeps_connection_errors_and_other_errors_whole() -> None:
    from botocore.exceptions import EndpointConnectionError
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

    refused = OpenSearchConnectionError("N/A", "Connection refused", Exception("[Errno 111] Connection refused"))
    assert describe_error(refused) == str(refused)
    unavailable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert describe_error(unavailable) == str(unavailable)
    withheld = RequestError(400, "free text with a row value: ROW", {"error": "ROW"})
    assert "ROW" not in describe_error(withheld)
