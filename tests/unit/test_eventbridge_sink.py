"""The EventBridge sink (fanout.sinks.eventbridge): one versioned entity event per applied change.

The sink is the real one over a faithful fake of ``put_events`` (tests/support/fakes.py FakeEventBridge: the
10-entry and 256 KB limits, per-entry answers, injected per-entry and whole-call faults); the fetcher is the
real one with the real OpenSearch and DynamoDB sinks over their fakes.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import MappingError, Mappings, check_event_bus, parse_mappings
from fanout.pipeline.fetch_queue import parse_fetcher_event
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.sinks import Outcome, RowRejected, SinkError
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.eventbridge import MAX_ENTRIES, MAX_REQUEST_BYTES, MAX_SENDS, EventBridgeSink, entry_size, event_entry
from fanout.sinks.opensearch import OpenSearchSink
from fanout.source.rows import RowState
from fanout_cli.commands.status import render
from fanout_cli.dead_letters.queue import QueueDepth
from fanout_cli.replication_status import log_lines, summarize
from tests.support.fakes import (
    FakeDynamoDBTable,
    FakeEventBridge,
    FakeOpenSearch,
    FakeSource,
    RecordingReject,
    client_error,
)
from tests.support.files import template_resource
from tests.support.log_events import T0

BUS = "fanout-changes"
MAPPINGS = parse_mappings(
    {
        "tables": {
            "notes": {
                "primary_key": [{"column": "id"}],
                "opensearch": {"rename": {"body": "text"}, "exclude": ["secret"]},
                "eventbridge": {"enabled": True},
            },
            "quiet": {"primary_key": [{"column": "id"}]},
            "settings": {
                "primary_key": [{"column": "tenant", "type": "string"}, {"column": "name", "type": "string"}],
                "eventbridge": {"enabled": True},
            },
        }
    }
)
NOTES = MAPPINGS.tables["notes"]
CHANGED_AT_US = 1_764_240_000_123_456


def change(key: int, table: str = "notes") -> Change:
    return Change(table, (("id", key),), "update", CHANGED_AT_US, f"req-{key}")


def note(key: int, body: str = "hello") -> dict[str, Any]:
    return {"id": key, "body": body, "price": Decimal("12.50"), "secret": "s3cret"}


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class World:
    """The source, the three sinks over their fakes, and the dead-letter recorder."""

    def __init__(self, mappings: Mappings = MAPPINGS) -> None:
        self.mappings = mappings
        self.source = FakeSource()
        self.opensearch = FakeOpenSearch()
        self.table = FakeDynamoDBTable.from_template(template_resource("ReplicaTable"))
        self.events = FakeEventBridge([BUS])
        self.sleeps = Sleeps()
        self.sink = EventBridgeSink(self.events, BUS, sleep=self.sleeps)
        self.reject = RecordingReject()
        sinks = [
            OpenSearchSink(self.opensearch),
            DynamoDBSink(self.table.meta.client, self.table.name, tombstone_ttl_seconds=60),
            self.sink,
        ]
        self.fetcher = Fetcher(mappings, self.source, sinks, reject=self.reject)

    def published(self, table: str = "notes") -> dict[Any, list[dict[str, Any]]]:
        """The published events' details by key value (one key column)."""
        by_key: dict[Any, list[dict[str, Any]]] = {}
        for event in self.events.published:
            detail = event["Detail"]
            if detail["table"] == table:
                by_key.setdefault(next(iter(detail["key"].values())), []).append(detail)
        return by_key


# --------------------------------------------------------------------------- the event


def test_an_upsert_event_carries_the_key_version_action_document_and_time() -> None:
    world = World()
    world.source.set("notes", (7,), note(7), version=41)

    world.fetcher.apply([change(7)])

    [event] = world.events.published
    assert event["Source"] == "fanout"
    assert event["DetailType"] == "notes upserted"
    assert event["EventBusName"] == BUS
    detail = event["Detail"]
    assert detail["table"] == "notes"
    assert detail["key"] == {"id": 7}
    assert detail["version"] == 41
    assert detail["action"] == "upsert"
    # what OpenSearch receives: renamed, excluded column left out, DECIMAL as its exact text
    assert detail["document"] == {"id": 7, "text": "hello", "price": "12.50"}
    assert detail["document"] == world.opensearch.document("notes", "7")
    assert detail["changed_at"] == "2025-11-27T10:40:00.123456Z"
    assert dt.datetime.fromisoformat(detail["changed_at"]).timestamp() * 1_000_000 == pytest.approx(CHANGED_AT_US)
    assert "truncated" not in detail


def test_a_delete_event_has_no_document_and_the_version_of_the_tombstones() -> None:
    world = World()
    world.source.set("notes", (7,), None, version=42)

    world.fetcher.apply([change(7)])

    [event] = world.events.published
    assert event["DetailType"] == "notes deleted"
    assert event["Detail"]["action"] == "delete"
    assert "document" not in event["Detail"]
    assert event["Detail"]["version"] == 42 == world.table.items["notes#7"]["_version"]


def test_a_composite_key_is_an_object_of_its_columns() -> None:
    world = World()
    key = (("tenant", "acme"), ("name", "a|b"))
    world.source.set("settings", ("acme", "a|b"), {"tenant": "acme", "name": "a|b", "value": "1"}, version=3)

    world.fetcher.apply([Change("settings", key, "insert", CHANGED_AT_US, "req")])

    [event] = world.events.published
    assert event["Detail"]["key"] == {"tenant": "acme", "name": "a|b"}


def test_a_table_without_events_publishes_nothing_and_its_other_sinks_are_written() -> None:
    world = World()
    world.source.set("quiet", (1,), {"id": 1}, version=5)

    report = world.fetcher.apply([change(1, "quiet")])

    assert world.events.requests == []
    assert {o["sink"] for o in report.outcomes} == {"opensearch", "dynamodb"}


def test_an_event_too_big_for_a_request_is_sent_without_its_document_and_marked_truncated() -> None:
    world = World()
    world.source.set("notes", (1,), note(1, body="x" * (300 * 1024)), version=9)
    world.source.set("notes", (2,), note(2), version=9)

    report = world.fetcher.apply([change(1), change(2)])

    events = world.published()
    assert events[1][0]["truncated"] is True
    assert "document" not in events[1][0]
    assert events[1][0]["version"] == 9 and events[1][0]["action"] == "upsert"
    assert "truncated" not in events[2][0] and events[2][0]["document"]["id"] == 2
    assert all(o["outcome"] == "written" for o in report.outcomes if o["sink"] == "eventbridge")


def test_a_document_just_under_the_limit_is_sent_whole() -> None:
    world = World()
    empty = entry_size(event_entry(BUS, NOTES, change(1), RowState(note(1, body=""), 9)))
    body = "y" * (MAX_REQUEST_BYTES - empty)  # exactly the limit
    world.source.set("notes", (1,), note(1, body=body), version=9)

    world.fetcher.apply([change(1)])

    [request] = world.events.requests
    assert entry_size(request[0]) == MAX_REQUEST_BYTES
    assert world.published()[1][0]["document"]["text"] == body


# --------------------------------------------------------------------------- requests


def test_events_go_in_requests_of_at_most_ten_entries_and_256_kb() -> None:
    world = World()
    keys = range(1, 26)
    for key in keys:
        world.source.set("notes", (key,), note(key, body="z" * (60 * 1024)), version=100 + key)

    world.fetcher.apply([change(key) for key in keys])

    assert all(1 <= len(request) <= MAX_ENTRIES for request in world.events.requests)
    assert all(sum(entry_size(e) for e in request) <= MAX_REQUEST_BYTES for request in world.events.requests)
    assert len(world.events.requests) >= 25 * 60 // 256  # the size, not the count, cut these
    assert sorted(world.published()) == list(keys)


def test_small_events_fill_requests_of_ten() -> None:
    world = World()
    for key in range(1, 24):
        world.source.set("notes", (key,), note(key), version=key)

    world.fetcher.apply([change(key) for key in range(1, 24)])

    assert [len(request) for request in world.events.requests] == [10, 10, 3]


# --------------------------------------------------------------------------- failures


def keys_of(request: list[dict[str, Any]]) -> list[int]:
    return [json.loads(entry["Detail"])["key"]["id"] for entry in request]


def test_failed_entries_are_retried_alone_after_a_backoff_and_nothing_is_lost() -> None:
    world = World()
    keys = list(range(1, 13))
    for key in keys:
        world.source.set("notes", (key,), note(key), version=500 + key)
    world.events.fail_entries(lambda detail: detail["key"]["id"] in (3, 8), "ThrottlingException")
    world.events.fail_entries(lambda detail: detail["key"]["id"] == 11, "InternalFailure", times=2)

    report = world.fetcher.apply([change(key) for key in keys])

    # each request's failed entries went again without the ones that were published, after a backoff (the two
    # requests of the batch are sent side by side: their order is not fixed)
    assert sorted(keys_of(request) for request in world.events.requests) == [
        list(range(1, 11)),
        [3, 8],
        [11],
        [11],
        [11, 12],
    ]
    assert len(world.sleeps.waits) == 3
    published = world.published()
    assert sorted(published) == keys  # every key's event, exactly once, at the version the other sinks hold
    for key, events in published.items():
        assert [event["version"] for event in events] == [500 + key] == [world.table.items[f"notes#{key}"]["_version"]]
    assert world.reject.rejections == []
    assert all(o["outcome"] == "written" for o in report.outcomes)


def test_an_event_still_throttled_after_its_sends_is_retried_by_the_queue_not_dead_lettered() -> None:
    world = World()
    for key in (1, 2):
        world.source.set("notes", (key,), note(key), version=70)
    world.events.fail_entries(lambda detail: detail["key"]["id"] == 2, "ThrottlingException", times=MAX_SENDS)

    with pytest.raises(FetchFailed) as failed:
        world.fetcher.apply([change(1), change(2)])

    # load alone is no reason to dead-letter: the change is failed, so the fetch queue receives it again
    report = failed.value.report
    assert report.failed_keys == {("notes", (("id", 2),))}
    assert "ThrottlingException" in report.failures[0] and f"after {MAX_SENDS} sends" in report.failures[0]
    assert len(world.sleeps.waits) == MAX_SENDS - 1
    assert world.reject.rejections == []
    outcomes = {(o["key"], o["sink"]): o["outcome"] for o in report.outcomes}
    assert outcomes[("1", "eventbridge")] == "written"
    assert world.opensearch.document("notes", "2") is not None and world.table.items["notes#2"]["_version"] == 70

    world.fetcher.apply([change(2)])  # the queue's retry, the throttling over: published, at the same version
    assert [event["version"] for event in world.published()[2]] == [70]
    assert world.reject.rejections == []


def test_an_entry_refused_for_good_is_not_retried() -> None:
    world = World()
    world.source.set("notes", (1,), note(1), version=70)
    world.events.fail_entries(lambda detail: True, "AccessDeniedException")

    world.fetcher.apply([change(1)])

    assert len(world.events.requests) == 1 and world.sleeps.waits == []
    [rejection] = world.reject.rejections
    assert "AccessDeniedException" in rejection.reason and rejection.reason.startswith("eventbridge: ")
    # the record holds the change itself: redriven, it is fetched (and published) again
    changes, rejected = parse_fetcher_event(rejection.payload, MAPPINGS, RecordingReject(), "redrive")
    assert [c.key for c in changes] == [(("id", 1),)] and rejected == 0
    assert world.opensearch.document("notes", "1") is not None  # the other sinks were written


def test_a_bus_that_does_not_exist_is_a_rejection_of_each_event_not_a_lost_change() -> None:
    world = World()
    world.sink = EventBridgeSink(world.events, "no-such-bus", sleep=world.sleeps)
    world.fetcher = Fetcher(world.mappings, world.source, [world.sink], reject=world.reject)
    world.source.set("notes", (1,), note(1), version=70)

    world.fetcher.apply([change(1)])

    assert "ResourceNotFoundException" in world.reject.rejections[0].reason


def test_a_whole_call_failing_fails_the_change_so_the_queue_retries_it() -> None:
    world = World()
    world.source.set("notes", (1,), note(1), version=70)
    world.events.fail_calls(client_error("ThrottlingException", "Rate exceeded", "PutEvents"))

    with pytest.raises(FetchFailed) as failed:
        world.fetcher.apply([change(1)])

    assert ("notes", (("id", 1),)) in failed.value.report.failed_keys
    assert "eventbridge failed" in failed.value.report.failures[0]
    assert world.reject.rejections == []  # retried by the queue, not dead-lettered at once
    assert world.opensearch.document("notes", "1") is not None  # the other sinks were still written

    world.fetcher.apply([change(1)])  # the queue's retry
    assert world.published()[1][0]["version"] == 70


def test_apply_raises_what_apply_batch_reports() -> None:
    world = World()
    world.events.fail_calls(client_error("InternalFailure", "boom", "PutEvents"))

    with pytest.raises(SinkError):
        world.sink.apply(NOTES, change(1), RowState(note(1), 1))
    assert world.sink.apply(NOTES, change(1), RowState(None, 2)) is Outcome.DELETED


def test_a_row_with_no_json_form_is_rejected_by_the_event_sink_alone() -> None:
    world = World()
    [outcome] = world.sink.apply_batch(NOTES, [(change(1), RowState({"id": 1, "body": object()}, 1))])
    assert isinstance(outcome, RowRejected)
    assert world.events.requests == []


# --------------------------------------------------------------------------- the mapping


@pytest.mark.parametrize(
    ("section", "field", "reason"),
    [
        ({"enabled": "yes"}, "eventbridge.enabled", "must be true or false"),
        ({"enabled": True, "bus": "other"}, "eventbridge.bus", "unknown field"),
        ([], "eventbridge", "must be an object"),
    ],
)
def test_the_eventbridge_section_is_validated_naming_the_table_and_the_field(
    section: Any, field: str, reason: str
) -> None:
    with pytest.raises(MappingError) as refused:
        parse_mappings({"tables": {"notes": {"primary_key": [{"column": "id"}], "eventbridge": section}}})

    assert f"table mapping for 'notes', field '{field}'" in str(refused.value)
    assert reason in str(refused.value)


def test_events_are_off_unless_the_mapping_turns_them_on() -> None:
    assert MAPPINGS.tables["quiet"].eventbridge.enabled is False
    assert NOTES.eventbridge.enabled is True


def test_publishing_without_a_bus_is_refused_naming_the_table() -> None:
    with pytest.raises(MappingError, match="'notes', field 'eventbridge.enabled'.*EVENT_BUS_NAME"):
        check_event_bus(MAPPINGS, "")
    check_event_bus(MAPPINGS, BUS)


def test_a_fetcher_without_the_event_sink_writes_the_others_and_publishes_nothing() -> None:
    world = World()
    world.source.set("notes", (1,), note(1), version=70)

    report = world.fetcher.without_sink("eventbridge").apply([change(1)])

    assert world.events.requests == []
    assert {o["sink"] for o in report.outcomes} == {"opensearch", "dynamodb"}
    assert [sink.name for sink in world.fetcher.sinks] == ["opensearch", "dynamodb", "eventbridge"]


# --------------------------------------------------------------------------- fanout status


def test_status_shows_events_published_and_failed_per_table(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a batch of three changes, one of whose events cannot be published
    world = World()
    for key in (1, 2, 3):
        world.source.set("notes", (key,), note(key), version=10)
    world.events.fail_entries(lambda detail: detail["key"]["id"] == 3, "AccessDeniedException")
    capsys.readouterr()
    world.fetcher.apply([change(1), change(2), change(3)])
    # When status reads the fetcher's batch line
    written = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"level"')]
    events = [{"timestamp": T0, "message": line} for line in written]
    report = summarize(log_lines(events), [], QueueDepth(0, 0, 0), ["notes"], window_seconds=60, now_ms=T0)
    # Then it counts the events per table, apart from the other sinks' writes
    assert report["tables"]["notes"]["events"] == {"published": 2, "failed": 1}
    assert report["tables"]["notes"]["counts"]["applied"] == 3 + 3 + 2
    assert "  events        published 2, failed 1" in render(report).splitlines()


def test_a_request_refused_whole_is_sent_entry_by_entry_so_only_the_entry_at_fault_is_rejected() -> None:
    world = World()
    for key in (1, 2, 3):
        world.source.set("notes", (key,), note(key), version=10)
    world.events.fail_calls(client_error("ValidationException", "Total size of the entries is over the limit", "x"))
    world.events.fail_calls(client_error("ValidationException", "this entry is invalid", "PutEvents"))  # entry 1

    report = world.fetcher.apply([change(1), change(2), change(3)])

    assert [keys_of(request) for request in world.events.requests] == [[1, 2, 3], [1], [2], [3]]
    outcomes = {o["key"]: o["outcome"] for o in report.outcomes if o["sink"] == "eventbridge"}
    assert outcomes == {"1": "rejected", "2": "written", "3": "written"}
    [rejection] = world.reject.rejections
    assert "this entry is invalid" in rejection.reason
