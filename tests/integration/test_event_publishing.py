"""PutEvents answered in part, through the real botocore client: failed entries are sent again alone, and every
change's event reaches a consumer exactly once.

The EventBridge sink (fanout.sinks.eventbridge) publishes to a bus on ministack through an HTTP forwarder
(tests/support/fault_injection.py PartialPutEvents) that fails chosen entries the way EventBridge does (HTTP 200,
a per-entry ErrorCode) and forwards the others; a rule delivers the bus's events to an SQS queue, read here as a
consumer would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from fanout.model.change import Change
from fanout.model.mapping import parse_mappings
from fanout.pipeline.wiring import aws_config
from fanout.sinks import Outcome, SinkError
from fanout.sinks.eventbridge import MAX_SENDS, EventBridgeSink
from fanout.source.rows import RowState
from tests.support.aws import aws_client
from tests.support.fault_injection import PartialPutEvents
from tests.support.waiting import wait_until

NOTES = parse_mappings(
    {"tables": {"notes": {"primary_key": [{"column": "id"}], "eventbridge": {"enabled": True}}}}
).tables["notes"]


class Bus:
    def __init__(self, local_aws: dict[str, str]) -> None:
        self.name = f"fanout-test-{uuid.uuid4().hex[:8]}"
        self.events = aws_client(local_aws, "events")
        self.sqs = aws_client(local_aws, "sqs")
        self.events.create_event_bus(Name=self.name)
        self.queue_url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]
        pattern = json.dumps({"source": ["fanout"]})
        self.events.put_rule(Name=self.name, EventBusName=self.name, EventPattern=pattern, State="ENABLED")
        self.events.put_targets(
            Rule=self.name, EventBusName=self.name, Targets=[{"Id": "consumer", "Arn": arn["QueueArn"]}]
        )
        self.received: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return self.received
            self.received.extend(json.loads(m["Body"])["detail"] for m in messages)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def close(self) -> None:
        self.events.remove_targets(Rule=self.name, EventBusName=self.name, Ids=["consumer"])
        self.events.delete_rule(Name=self.name, EventBusName=self.name)
        self.events.delete_event_bus(Name=self.name)
        self.sqs.delete_queue(QueueUrl=self.queue_url)


@pytest.fixture
def bus(local_aws: dict[str, str]) -> Iterator[Bus]:
    made = Bus(local_aws)
    yield made
    made.close()


@pytest.fixture
def proxy(local_aws: dict[str, str]) -> Iterator[PartialPutEvents]:
    forwarder = PartialPutEvents(local_aws["AWS_ENDPOINT_URL"])
    yield forwarder
    forwarder.close()


def sink_through(proxy: PartialPutEvents, local_aws: dict[str, str], bus: Bus, waits: list[float]) -> EventBridgeSink:
    client = boto3.client(
        "events",
        endpoint_url=proxy.url,
        region_name=local_aws["AWS_DEFAULT_REGION"],
        aws_access_key_id=local_aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=local_aws["AWS_SECRET_ACCESS_KEY"],
        config=aws_config(),
    )
    return EventBridgeSink(client, bus.name, sleep=waits.append)


def rows(count: int) -> list[tuple[Change, RowState]]:
    return [
        (Change("notes", (("id", key),), "update", 1_764_240_000_000_000), RowState({"id": key, "n": key}, 1000 + key))
        for key in range(1, count + 1)
    ]


def keys_of(request: list[dict[str, Any]]) -> list[int]:
    return sorted(json.loads(entry["Detail"])["key"]["id"] for entry in request)


def test_entries_failed_by_putevents_are_sent_again_alone_and_every_event_arrives_once(
    bus: Bus, proxy: PartialPutEvents, local_aws: dict[str, str]
) -> None:
    waits: list[float] = []
    sink = sink_through(proxy, local_aws, bus, waits)
    proxy.fail(lambda detail: detail["key"]["id"] in (3, 8), "ThrottlingException")
    proxy.fail(lambda detail: detail["key"]["id"] == 17, "InternalFailure", times=2)

    outcomes = sink.apply_batch(NOTES, rows(25))

    assert outcomes == [Outcome.WRITTEN] * 25
    sent = sorted(keys_of(request) for request in proxy.requests)
    assert sent == sorted([list(range(1, 11)), list(range(11, 21)), list(range(21, 26)), [3, 8], [17], [17]])
    assert len(waits) == 3  # a backoff before each re-send
    received = wait_until("all 25 events at the consumer", lambda: len(bus.drain()) >= 25 and bus.received)
    assert sorted(detail["key"]["id"] for detail in received) == list(range(1, 26))  # each exactly once
    assert all(detail["version"] == 1000 + detail["key"]["id"] for detail in received)


def test_an_entry_throttled_on_every_send_is_left_to_the_queue_to_retry_and_the_others_are_published(
    bus: Bus, proxy: PartialPutEvents, local_aws: dict[str, str]
) -> None:
    waits: list[float] = []
    sink = sink_through(proxy, local_aws, bus, waits)
    proxy.fail(lambda detail: detail["key"]["id"] == 2, "ThrottlingException", times=MAX_SENDS)

    outcomes = sink.apply_batch(NOTES, rows(3))

    assert outcomes[0] is Outcome.WRITTEN and outcomes[2] is Outcome.WRITTEN
    assert isinstance(outcomes[1], SinkError) and "ThrottlingException" in str(outcomes[1])  # retried, not refused
    assert [keys_of(request) for request in proxy.requests] == [[1, 2, 3]] + [[2]] * (MAX_SENDS - 1)
    received = wait_until("two events at the consumer", lambda: len(bus.drain()) >= 2 and bus.received)
    assert sorted(detail["key"]["id"] for detail in received) == [1, 3]
