"""Rejected payloads with characters SQS refuses are still recorded, exactly, in a real queue (ministack's SQS).

SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in a
message body and refuses the rest with InvalidMessageContents; a JSON payload may
hold any of them (lone surrogates, U+FFFF, control characters). The record is ASCII
JSON, so the queue takes it and ``fanout dlq`` reads back exactly what was sent.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fanout.model.mapping import default_mappings
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.dead_letters.records import Kind
from fanout_cli.dead_letters.redrive import plan_redrive
from fanout_cli.stack_resources import StackResources
from tests.support.aws import aws_client

HOSTILE = [
    "\ud800",
    "\udfff\ud800",
    "\ufffe\uffff",
    "\x00\x01\x1f",
    "\u202eevil\u202c",
    "e\u0301",
    "\U0001f600",
    "'; --",
]


@pytest.fixture
def queue(local_aws: dict[str, str]) -> Any:
    sqs = aws_client(local_aws, "sqs")
    url = sqs.create_queue(QueueName=f"fanout-test-hostile-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    resources = StackResources(url, "t-parser", "t-fetcher", "/t/parser", "/t/fetcher")
    try:
        yield sqs, DeadLetterQueue(sqs, url, resources)
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_the_queue_itself_refuses_those_characters_in_a_raw_body(queue: Any) -> None:
    # (the premise: without the encoding, the record would be lost on the way to the queue)
    sqs, dlq = queue
    with pytest.raises(sqs.exceptions.ClientError, match="InvalidMessageContents"):
        sqs.send_message(QueueUrl=dlq.url, MessageBody='{"payload": "\uffff"}')


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_a_payload_holding_any_character_is_recorded_and_read_back_exactly(queue: Any, text: str) -> None:
    # Given a trigger payload whose table name holds the characters
    sqs, dlq = queue
    payload = {"v": 1, "action": "update", "table": f"posts{text}", "pk": {"id": 1}, "ts": 1764240000}

    # When the parser records its rejection
    QueueRejectRecorder(sqs, dlq.url, source="parser")("table: is not a mapped table", payload, "req-hostile")

    # Then the queue holds it, and the operators' tools read back the very payload
    [letter] = dlq.hold_all()
    assert (letter.kind, letter.source, letter.payload) == (Kind.REJECTED, "parser", payload)
    assert plan_redrive(letter, default_mappings()).reason.startswith("still invalid: table:")
