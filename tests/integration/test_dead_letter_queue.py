"""The dead-letter queue operations against SQS (ministack): reading holds and releases, keeping re-sends intact."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from fanout.pipeline.rejects import QueueRejectRecorder
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.dead_letters.records import FIRST_SENT_AT, REDRIVE_COUNT, REDRIVE_ERROR, Kind
from fanout_cli.stack_resources import StackResources
from tests.support.aws import aws_client


@pytest.fixture
def queue(local_aws: dict[str, str]) -> Any:
    sqs = aws_client(local_aws, "sqs")
    url = sqs.create_queue(QueueName=f"fanout-test-dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    resources = StackResources(url, "t-parser", "t-fetcher", "/t/parser", "/t/fetcher")
    try:
        yield sqs, DeadLetterQueue(sqs, url, resources)
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_reading_sees_each_message_once_and_release_makes_them_visible_again(queue: Any) -> None:
    # Given three rejection records, as the functions write them
    sqs, dlq = queue
    record = QueueRejectRecorder(sqs, dlq.url, source="parser")
    for i in range(3):
        record(f"pk.id: bad {i}", {"v": 1, "table": "posts", "pk": {"id": f"x{i}"}}, f"req-{i}")

    # When they are read (held) and released
    letters = dlq.hold_all(hold_seconds=60)
    held = dlq.depth()
    dlq.release(letters)

    # Then each was seen once, held while read, and is back afterwards
    assert sorted(letter.reason for letter in letters) == ["pk.id: bad 0", "pk.id: bad 1", "pk.id: bad 2"]
    assert {letter.kind for letter in letters} == {Kind.REJECTED}
    assert (held.visible, held.in_flight) == (0, 3)
    assert dlq.depth().visible == 3


def test_keeping_a_letter_re_sends_the_same_record_with_the_error_beside_it(queue: Any) -> None:
    sqs, dlq = queue
    QueueRejectRecorder(sqs, dlq.url, source="fetcher")("changes[0].pk.id: bad", {"v": 1}, "req-k")
    [letter] = dlq.hold_all()

    dlq.keep_with_error(letter, "still invalid: changes[0].pk.id: bad")
    dlq.keep_with_error(dlq.hold_all()[0], "still invalid, again")

    [kept] = dlq.hold_all()
    assert kept.body == letter.body  # the record itself is untouched
    assert json.loads(kept.body)["correlation_id"] == "req-k"
    assert kept.message_id != letter.message_id and dlq.depth().total == 1  # the previous copies are gone
    assert (kept.redrive_count, kept.last_redrive_error) == (2, "still invalid, again")
    assert kept.attributes["fanout-rejected-by"]["StringValue"] == "fetcher"
    assert kept.attributes[FIRST_SENT_AT]["StringValue"] == str(letter.sent_at_ms)
    assert kept.sent_at_ms == letter.sent_at_ms
    assert {REDRIVE_COUNT, REDRIVE_ERROR} <= set(kept.attributes)
