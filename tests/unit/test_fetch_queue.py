"""Queued fetch mode (fanout.fetch_queue): the parser's forwarder and the fetcher's SQS batch handling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import FakeContext, FakeSQSClient, RecordingReject, load_app
from test_fetcher import World, row

from fanout.change import Change
from fanout.config import ConfigError, ParserSettings
from fanout.fetch_queue import QueueForwarder, handle_queue_batch
from fanout.source_reader import SourceReadError

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/fetch"


def post(post_id: int, correlation_id: str = "req") -> Change:
    return Change("posts", (("id", post_id),), "update", 1_764_240_000_000_000, correlation_id)


def sqs_event(*bodies: Any) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fetch",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_the_forwarder_sends_one_message_per_change_in_batches_of_ten() -> None:
    # Given a queue and 23 changes
    sqs = FakeSQSClient()
    # When they are forwarded
    QueueForwarder(sqs, QUEUE)([post(i) for i in range(23)])
    # Then three SendMessageBatch calls carried one fetcher event per change
    assert sqs.batch_calls == 3
    assert [b["changes"][0]["pk"] for b in sqs.bodies()] == [{"id": i} for i in range(23)]


def test_a_change_the_queue_refuses_fails_the_forward_so_the_parser_invoke_is_retried() -> None:
    sqs = FakeSQSClient()
    sqs.refuse = {json.dumps({"changes": [post(2).to_message()]})}
    with pytest.raises(RuntimeError, match="refused 1 of 3"):
        QueueForwarder(sqs, QUEUE)([post(1), post(2), post(3)])


def test_a_batch_is_read_once_per_key_and_only_the_failed_records_are_retried() -> None:
    # Given rows 1 and 3, and row 2 whose read times out
    world = World()
    world.source.set("posts", (1,), row(1, "one"), version=10)
    world.source.set("posts", (3,), row(3, "three"), version=10)
    world.source.fail("posts", (2,), SourceReadError("lock wait timeout"))
    reject = RecordingReject()
    # When a batch holds post 1 twice, posts 2 and 3, and a body that is no change at all
    event = sqs_event(
        {"changes": [post(1, "a").to_message()]},
        {"changes": [post(2, "b").to_message()]},
        {"changes": [post(1, "c").to_message()]},
        "not json",
        {"changes": [post(3, "d").to_message()]},
    )
    response = handle_queue_batch(event, FakeContext(), world.mappings, world.source.read_row, world.sinks, reject)
    # Then only post 2's message is retried, post 1 was read once, both sinks hold 1 and 3,
    # and the malformed body is recorded in the dead-letter queue (not retried)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert [c.key_values for c in world.source.reads].count((1,)) == 1
    assert world.titles(1) == ("one", "one") and world.titles(3) == ("three", "three")
    assert len(reject.rejections) == 1 and "changes" in reject.rejections[0].reason


def test_parser_settings_name_the_fetch_mode_and_require_the_queue_when_queued() -> None:
    base = {"FETCHER_FUNCTION_NAME": "f", "DEAD_LETTER_QUEUE_URL": "d"}
    assert ParserSettings.from_env(base).fetch_mode == "direct"
    assert ParserSettings.from_env({**base, "FETCH_MODE": "queued", "FETCH_QUEUE_URL": QUEUE}).fetch_queue_url == QUEUE
    with pytest.raises(ConfigError, match="FETCH_QUEUE_URL"):
        ParserSettings.from_env({**base, "FETCH_MODE": "queued"})
    with pytest.raises(ConfigError, match="FETCH_MODE must be one of queued, direct, got 'sqs'"):
        ParserSettings.from_env({**base, "FETCH_MODE": "sqs"})


@pytest.mark.parametrize(("mode", "forwarder"), [("queued", "QueueForwarder"), ("direct", "LambdaForwarder")])
def test_the_parser_handler_forwards_as_the_fetch_mode_says(
    mode: str, forwarder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETCHER_FUNCTION_NAME", "fanout-test-fetcher")
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq")
    monkeypatch.setenv("FETCH_MODE", mode)
    monkeypatch.setenv("FETCH_QUEUE_URL", QUEUE)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    app = load_app("parser_fn/app.py", f"parser_app_{mode}")
    forward, _ = app._dependencies()
    assert type(forward).__name__ == forwarder
