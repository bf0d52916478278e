"""Change events through the deployed app on the local stack: a consumer subscribed to the stack's bus.

MySQL 8.0 triggers → change log → parser → fetch queue → fetcher → OpenSearch, DynamoDB and the EventBridge bus
(ministack) → a rule → an SQS queue, read here as a consumer would. Rows of a plain table (``posts``) and a
composed one (``articles``) are inserted, changed, re-keyed and deleted; for every key the event of the highest
version must be the state both other sinks hold: the same version, the document OpenSearch holds (or a delete
where both hold a delete).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import opensearch_document_id
from tests.support.e2e import Stack, article, post
from tests.support.waiting import wait_until

MAPPINGS = default_mappings()


@dataclass
class Consumer:
    """An SQS queue subscribed to the bus by a rule; the events read from it, by (table, key)."""

    sqs: Any
    queue_url: str
    events: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def drain(self) -> None:
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return
            for message in messages:
                envelope = json.loads(message["Body"], parse_float=Decimal)
                detail = envelope["detail"]
                assert envelope["source"] == "fanout"
                done = "deleted" if detail["action"] == "delete" else "upserted"
                assert envelope["detail-type"] == f"{detail['table']} {done}"
                key = json.dumps(detail["key"], sort_keys=True)
                self.events.setdefault((detail["table"], key), []).append(detail)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def latest(self, change: Change) -> dict[str, Any] | None:
        """The event of the highest version for the change's key (what a consumer keeps), None if none yet."""
        self.drain()
        events = self.events.get((change.table, json.dumps(dict(change.key), sort_keys=True)), [])
        return max(events, key=lambda detail: detail["version"]) if events else None


@pytest.fixture(scope="module")
def consumer(stack: Stack) -> Iterator[Consumer]:
    events, sqs = stack.client("events"), stack.client("sqs")
    name = f"fanout-consumer-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.env.event_bus_name
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": ["fanout"]}), State="ENABLED")
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "consumer", "Arn": queue_arn}])
    yield Consumer(sqs, queue_url)
    events.remove_targets(Rule=name, EventBusName=bus, Ids=["consumer"])
    events.delete_rule(Name=name, EventBusName=bus)
    sqs.delete_queue(QueueUrl=queue_url)


def sinks_version(stack: Stack, change: Change) -> tuple[int | None, dict[str, Any] | None, int | None]:
    """(OpenSearch's version of the document or None when there is none, its _source, DynamoDB's _version)."""
    mapping = MAPPINGS.tables[change.table]
    found = stack.opensearch.get(index=mapping.opensearch.index, id=opensearch_document_id(mapping, change), ignore=404)
    item = stack.item(change)
    item_version = int(item["_version"]) if item is not None else None
    if not found.get("found"):
        return None, None, item_version
    return int(found["_version"]), found["_source"], item_version


def event_matches_sinks(stack: Stack, consumer: Consumer, change: Change) -> dict[str, Any] | None:
    """The key's latest event when it is the state both sinks hold (same version; the document, or a delete)."""
    if stack.agreed(change) is None:
        return None
    latest = consumer.latest(change)
    if latest is None:
        return None
    os_version, source, item_version = sinks_version(stack, change)
    if latest["version"] != item_version:
        return None
    if latest["action"] == "delete":
        return latest if source is None and stack.item(change).get("_deleted") else None
    return latest if os_version == latest["version"] and latest["document"] == source else None


def test_every_key_has_an_event_whose_highest_version_is_what_both_sinks_hold(stack: Stack, consumer: Consumer) -> None:
    run = uuid.uuid4().hex[:8]
    # a plain table: inserted, changed, re-keyed and deleted
    kept = stack.sql("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'events')", f"kept {run}")
    moved = stack.sql("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'events')", f"moved {run}")
    gone = stack.sql("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'events')", f"gone {run}")
    stack.sql("UPDATE posts SET title = %s WHERE id = %s", f"kept, changed {run}", kept)
    rekeyed = moved + 1_000_000
    stack.sql("UPDATE posts SET id = %s WHERE id = %s", rekeyed, moved)
    stack.sql("DELETE FROM posts WHERE id = %s", gone)
    # a composed one: its author renamed (a change via a relation), a comment added, one unpublished, one deleted
    author = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Eve {run}")
    first = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                      f"first {run}", author)  # fmt: skip
    second = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                       f"second {run}", author)  # fmt: skip
    third = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                      f"third {run}", author)  # fmt: skip
    stack.sql("INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'c', 'hello')", first)
    stack.sql("UPDATE authors SET name = %s WHERE id = %s", f"Eve Renamed {run}", author)
    stack.sql("UPDATE articles SET status = 'draft' WHERE id = %s", second)
    stack.sql("DELETE FROM articles WHERE id = %s", third)

    expected = {
        post(kept): "upsert",
        post(moved): "delete",  # the old key of the re-keyed row
        post(rekeyed): "upsert",
        post(gone): "delete",
        article(first): "upsert",
        article(second): "delete",  # filtered out: both sinks hold a delete
        article(third): "delete",
    }
    for change, action in expected.items():
        latest = wait_until(
            f"{change.table}/{change.document_id}: the latest event is what both sinks hold",
            lambda c=change: event_matches_sinks(stack, consumer, c),
        )
        assert latest["action"] == action, (change, latest)
    latest_first = consumer.latest(article(first))
    assert latest_first is not None
    assert latest_first["document"]["author"]["name"] == f"Eve Renamed {run}"
    assert [c["body"] for c in latest_first["document"]["comments"]] == ["hello"]
    assert consumer.latest(post(kept))["document"]["title"] == f"kept, changed {run}"  # type: ignore[index]
    # a duplicate has the same version: every key's versions never repeat with different contents
    for (_, _), details in consumer.events.items():
        by_version: dict[int, Any] = {}
        for detail in details:
            seen = by_version.setdefault(detail["version"], detail.get("document"))
            assert seen == detail.get("document")


def test_the_bus_has_an_archive_for_replay(stack: Stack) -> None:
    events = stack.client("events")
    bus_arn = events.describe_event_bus(Name=stack.env.event_bus_name)["Arn"]
    archives = events.list_archives(EventSourceArn=bus_arn)["Archives"]
    assert [a["ArchiveName"] for a in archives] == [f"{stack.env.stack_name}-changes"]
    assert archives[0]["RetentionDays"] == 30
