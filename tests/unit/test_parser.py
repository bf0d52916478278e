"""The parser: a ring drains the change log (tests/integration/test_change_log.py); any other event is recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType

import pytest
from botocore.exceptions import ClientError

from fanout.config import ConfigError, ParserSettings
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.pipeline.parser import NOT_A_RING
from fanout.pipeline.rejects import MAX_RECORDED_PAYLOAD_CHARS, QueueRejectRecorder
from tests.support.fakes import FakeContext, FakeLambdaClient, FakeSQSClient, load_app, load_event

CORRELATION_ID = "req-0001"
FETCH_QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/fanout-fetch"
DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/fanout-dlq"


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
        self.fetch_queue = FakeSQSClient()
        self.sqs = FakeSQSClient()
        self.lambda_client = FakeLambdaClient()

    def dependencies(self) -> tuple[QueueForwarder, QueueRejectRecorder, FakeLambdaClient]:
        # The same construction as the handler's own, from the same settings, over fakes.
        settings = ParserSettings.from_env()
        return (
            QueueForwarder(self.fetch_queue, settings.fetch_queue_url),
            QueueRejectRecorder(self.sqs, settings.dead_letter_queue_url, source="parser"),
            self.lambda_client,
        )


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch) -> Iterator[ParserWorld]:
    app = load_parser_app()
    real_dependencies = app._dependencies
    world = ParserWorld(app)
    monkeypatch.setenv("FETCH_QUEUE_URL", FETCH_QUEUE_URL)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", DLQ_URL)
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    monkeypatch.setattr(app, "_dependencies", world.dependencies)
    yield world
    real_dependencies.cache_clear()


@pytest.mark.parametrize("name", ["update.json", "malformed.json"])
def test_an_event_that_is_no_ring_is_recorded_once_and_nothing_is_forwarded(parser: ParserWorld, name: str) -> None:
    # Given a per-row payload of the retired triggers (valid or not): the parser takes only a ring
    event = load_event(name)

    # When (no exception: retrying it would only delay the record)
    result = parser.app.handler(event, FakeContext(aws_request_id="req-handler-2"))

    # Then it is recorded with the reason, and no change reaches the fetch queue
    assert result == {"accepted": 0, "rejected": 1, "reason": NOT_A_RING}
    assert parser.fetch_queue.messages == []
    [body] = parser.sqs.bodies()
    assert (body["reason"], body["correlation_id"]) == (NOT_A_RING, "req-handler-2")
    assert json.loads(body["payload"]) == event


def test_the_parser_handler_fails_loudly_without_its_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cold start with no FETCH_QUEUE_URL
    app = load_parser_app()
    monkeypatch.delenv("FETCH_QUEUE_URL", raising=False)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", DLQ_URL)

    # When / Then the real dependency builder refuses before making any client
    try:
        with pytest.raises(ConfigError, match="FETCH_QUEUE_URL"):
            app._dependencies()
    finally:
        app._dependencies.cache_clear()


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "DEAD_LETTER_QUEUE_URL"),
        ({"DEAD_LETTER_QUEUE_URL": DLQ_URL}, "FETCH_QUEUE_URL"),
        ({"FETCH_QUEUE_URL": "  ", "DEAD_LETTER_QUEUE_URL": DLQ_URL}, "FETCH_QUEUE_URL"),
    ],
)
def test_parser_settings_name_the_missing_variable(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        ParserSettings.from_env(env)


def test_parser_settings_read_both_variables() -> None:
    settings = ParserSettings.from_env({"FETCH_QUEUE_URL": FETCH_QUEUE_URL, "DEAD_LETTER_QUEUE_URL": DLQ_URL})

    assert (settings.fetch_queue_url, settings.dead_letter_queue_url) == (FETCH_QUEUE_URL, DLQ_URL)
