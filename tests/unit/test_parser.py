"""The parser: valid payloads go on to the fetcher, invalid ones are recorded in the dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fanout.config import ConfigError, ParserSettings
from fanout.model.mapping import default_mappings
from fanout.pipeline.handoff import LambdaForwarder, parse_fetcher_event
from fanout.pipeline.parser import handle_trigger_payload
from fanout.pipeline.rejects import MAX_RECORDED_PAYLOAD_CHARS, QueueRejectRecorder
from tests.support.fakes import (
    FakeContext,
    FakeLambdaClient,
    FakeSQSClient,
    RecordingForward,
    RecordingReject,
    load_app,
    load_event,
)

POSTS = default_mappings()
CORRELATION_ID = "req-0001"
FETCHER = "fanout-dev-FetcherFunction"
DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/fanout-dlq"


# --------------------------------------------------------------------------- handle_trigger_payload


def test_a_valid_event_is_forwarded_and_nothing_is_rejected() -> None:
    forward, reject = RecordingForward(), RecordingReject()

    result = handle_trigger_payload(load_event("update_primary_key.json"), POSTS, forward, reject, CORRELATION_ID)

    assert result.as_dict() == {"accepted": 2, "rejected": 0, "reason": ""}
    [batch] = forward.batches  # one hand-over for both keys
    assert [c.key_values for c in batch] == [(2,), (1,)]
    assert all(c.correlation_id == CORRELATION_ID for c in batch)
    assert reject.rejections == []


@pytest.mark.parametrize(("name", "field"), [("malformed.json", "pk.id"), ("unknown_table.json", "table")])
def test_an_invalid_event_is_recorded_with_its_reason_and_not_forwarded(name: str, field: str) -> None:
    # Given an event that can never be valid
    event = load_event(name)
    forward, reject = RecordingForward(), RecordingReject()

    # When (no exception: retrying it would only delay the record)
    result = handle_trigger_payload(event, POSTS, forward, reject, CORRELATION_ID)

    # Then
    assert forward.batches == []
    [rejection] = reject.rejections
    assert rejection.reason.startswith(f"{field}: ")
    assert rejection.payload == event
    assert rejection.correlation_id == CORRELATION_ID
    assert (result.accepted, result.rejected, result.reason) == (0, 1, rejection.reason)


def test_a_forwarding_failure_is_raised_so_that_lambda_retries() -> None:
    def unavailable(changes: Any) -> None:
        raise ConnectionError("lambda endpoint unreachable")

    reject = RecordingReject()
    with pytest.raises(ConnectionError):
        handle_trigger_payload(load_event("insert.json"), POSTS, unavailable, reject, CORRELATION_ID)
    assert reject.rejections == []  # a valid change is never recorded as rejected


# --------------------------------------------------------------------------- LambdaForwarder


def test_lambda_forwarder_invokes_the_fetcher_asynchronously_with_a_valid_fetcher_event() -> None:
    # Given
    client = FakeLambdaClient(status_code=202)
    changes = handle_and_collect("update_primary_key.json")

    # When
    LambdaForwarder(client, FETCHER)(changes)

    # Then
    [call] = client.invocations
    assert call["FunctionName"] == FETCHER
    assert call["InvocationType"] == "Event"
    event = json.loads(call["Payload"])
    reject = RecordingReject()
    parsed, rejected = parse_fetcher_event(event, POSTS, reject, CORRELATION_ID)
    assert (parsed, rejected, reject.rejections) == (changes, 0, [])


@pytest.mark.parametrize("status", [200, 204, 400, 500, None])
def test_lambda_forwarder_raises_unless_the_invoke_was_accepted(status: int | None) -> None:
    client = FakeLambdaClient(status_code=status)

    with pytest.raises(RuntimeError, match=FETCHER):
        LambdaForwarder(client, FETCHER)(handle_and_collect("insert.json"))


def handle_and_collect(name: str) -> list[Any]:
    forward = RecordingForward()
    handle_trigger_payload(load_event(name), POSTS, forward, RecordingReject(), CORRELATION_ID)
    [batch] = forward.batches
    return batch


# --------------------------------------------------------------------------- QueueRejectRecorder


def test_reject_recorder_sends_the_reason_and_payload_to_the_queue() -> None:
    # Given
    sqs = FakeSQSClient()
    payload = load_event("malformed.json")

    # When
    QueueRejectRecorder(sqs, DLQ_URL, source="parser")("pk.id: must be an integer", payload, CORRELATION_ID)

    # Then
    [message] = sqs.messages
    assert message["QueueUrl"] == DLQ_URL
    assert message["MessageAttributes"]["fanout-rejected-by"] == {"DataType": "String", "StringValue": "parser"}
    body = json.loads(message["MessageBody"])
    assert body["fanout_rejected"] is True
    assert body["rejected_by"] == "parser"
    assert body["reason"] == "pk.id: must be an integer"
    assert body["correlation_id"] == CORRELATION_ID
    assert json.loads(body["payload"]) == payload
    assert body["payload_truncated"] is False


def test_reject_recorder_truncates_a_huge_payload() -> None:
    sqs = FakeSQSClient()
    payload = {"v": 1, "junk": "x" * (2 * MAX_RECORDED_PAYLOAD_CHARS)}

    QueueRejectRecorder(sqs, DLQ_URL, source="parser")("too big", payload, CORRELATION_ID)

    [body] = sqs.bodies()
    assert body["payload_truncated"] is True
    assert len(body["payload"]) == MAX_RECORDED_PAYLOAD_CHARS
    assert body["payload"].startswith('{"v": 1, "junk": "xxx')


def test_reject_recorder_records_a_payload_that_is_not_json_serialisable() -> None:
    sqs = FakeSQSClient()

    QueueRejectRecorder(sqs, DLQ_URL, source="fetcher")("bad", {"raw": b"\x00\x01", "n": {1, 2}}, CORRELATION_ID)

    [body] = sqs.bodies()
    assert body["rejected_by"] == "fetcher"
    assert json.loads(body["payload"]) == {"raw": repr(b"\x00\x01"), "n": repr({1, 2})}  # recorded, as repr


@pytest.mark.parametrize("text", ["😀", "漢", '"'], ids=["emoji", "cjk", "quote"])
def test_a_truncated_reject_record_still_fits_in_an_sqs_message(text: str) -> None:
    # Given a huge payload of characters that take more than one byte in the message body
    # (UTF-8, or a JSON escape once the payload text is embedded in the record)
    sqs = FakeSQSClient(max_message_bytes=256 * 1024)
    payload = {"junk": text * (2 * MAX_RECORDED_PAYLOAD_CHARS)}

    # When it is recorded: the truncation exists so the record fits the queue's 256 KiB cap
    try:
        QueueRejectRecorder(sqs, DLQ_URL, source="parser")("too big", payload, CORRELATION_ID)
    except ClientError as exc:
        pytest.fail(f"the record was refused by the queue: {exc}")

    # Then it was recorded, truncated
    [body] = sqs.bodies()
    assert body["payload_truncated"] is True


def test_a_reject_that_cannot_be_recorded_raises() -> None:
    sqs = FakeSQSClient(max_message_bytes=1024)

    with pytest.raises(ClientError):
        QueueRejectRecorder(sqs, DLQ_URL, source="parser")("bad", {"junk": "x" * 5000}, CORRELATION_ID)


# --------------------------------------------------------------------------- parser_fn/app.py


def load_parser_app() -> ModuleType:
    return load_app("parser_fn/app.py", "parser_app")


class ParserWorld:
    """The parser handler wired to fakes instead of AWS clients."""

    def __init__(self, app: ModuleType) -> None:
        self.app = app
        self.lambda_client = FakeLambdaClient()
        self.sqs = FakeSQSClient()

    def dependencies(self) -> tuple[LambdaForwarder, QueueRejectRecorder]:
        # The same construction as the handler's own, from the same settings, over fakes.
        settings = ParserSettings.from_env()
        return (
            LambdaForwarder(self.lambda_client, settings.fetcher_function_name),
            QueueRejectRecorder(self.sqs, settings.dead_letter_queue_url, source="parser"),
        )


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch) -> Iterator[ParserWorld]:
    app = load_parser_app()
    real_dependencies = app._dependencies
    world = ParserWorld(app)
    monkeypatch.setenv("FETCHER_FUNCTION_NAME", FETCHER)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", DLQ_URL)
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    monkeypatch.setattr(app, "_dependencies", world.dependencies)
    yield world
    real_dependencies.cache_clear()


def test_the_parser_handler_forwards_a_valid_event(parser: ParserWorld) -> None:
    context = FakeContext(aws_request_id="req-handler-1")

    result = parser.app.handler(load_event("update.json"), context)

    assert result == {"accepted": 1, "rejected": 0, "reason": ""}
    [call] = parser.lambda_client.invocations
    assert call["FunctionName"] == FETCHER
    [message] = json.loads(call["Payload"])["changes"]
    assert message["pk"] == {"id": 1}
    assert message["correlation_id"] == "req-handler-1"
    assert parser.sqs.messages == []


def test_the_parser_handler_records_a_malformed_event_and_returns(parser: ParserWorld) -> None:
    result = parser.app.handler(load_event("malformed.json"), FakeContext(aws_request_id="req-handler-2"))

    assert (result["accepted"], result["rejected"]) == (0, 1)
    assert result["reason"].startswith("pk.id: ")
    assert parser.lambda_client.invocations == []
    [body] = parser.sqs.bodies()
    assert body["reason"] == result["reason"]
    assert body["correlation_id"] == "req-handler-2"


def test_the_parser_handler_fails_loudly_without_its_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cold start with no FETCHER_FUNCTION_NAME
    app = load_parser_app()
    monkeypatch.delenv("FETCHER_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", DLQ_URL)

    # When / Then the real dependency builder refuses before making any client
    try:
        with pytest.raises(ConfigError, match="FETCHER_FUNCTION_NAME"):
            app._dependencies()
    finally:
        app._dependencies.cache_clear()


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "FETCHER_FUNCTION_NAME"),
        ({"FETCHER_FUNCTION_NAME": FETCHER}, "DEAD_LETTER_QUEUE_URL"),
        ({"FETCHER_FUNCTION_NAME": "  ", "DEAD_LETTER_QUEUE_URL": DLQ_URL}, "FETCHER_FUNCTION_NAME"),
    ],
)
def test_parser_settings_name_the_missing_variable(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        ParserSettings.from_env(env)


def test_parser_settings_read_both_variables() -> None:
    settings = ParserSettings.from_env({"FETCHER_FUNCTION_NAME": FETCHER, "DEAD_LETTER_QUEUE_URL": DLQ_URL})

    assert (settings.fetcher_function_name, settings.dead_letter_queue_url) == (FETCHER, DLQ_URL)


def test_a_drained_batch_goes_to_the_fetcher_in_invokes_of_at_most_100_changes() -> None:
    # Given 250 changes, as a drainer hands them on in one call (an async invoke takes at most 256 KB)
    from fanout.model.change import Change
    from fanout.pipeline.handoff import DIRECT_CHANGES_PER_INVOKE

    client = FakeLambdaClient(status_code=202)
    changes = [Change("posts", (("id", key),), "update", 1_764_240_000_000_000) for key in range(250)]

    # When
    LambdaForwarder(client, FETCHER)(changes)

    # Then
    sizes = [len(json.loads(call["Payload"])["changes"]) for call in client.invocations]
    assert DIRECT_CHANGES_PER_INVOKE == 100 and sizes == [100, 100, 50]
