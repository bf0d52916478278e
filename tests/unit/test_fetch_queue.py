"""The fetch queue (fanout.pipeline.fetch_queue), both ends: the parser's forwarder, and the fetcher's SQS batches
as its handler (fetcher_fn/app.py) reads and answers them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fanout.config import ConfigError, ParserSettings
from fanout.model.change import Change, Stage
from fanout.model.mapping import default_mappings
from fanout.model.payloads import parse_change_message
from fanout.pipeline.fetch_queue import SPLIT_AT_MOST, QueueForwarder
from fanout.pipeline.rejects import message_body, rejection_record
from fanout.source.rows import SourceReadError
from fanout_cli.dead_letters.invoke import InvokeResult
from fanout_cli.dead_letters.records import DeadLetter, Kind, parse_dead_letter
from fanout_cli.dead_letters.redrive import redrive
from tests.support.dead_letters import MINISTACK_RECORD, RESOURCES, sqs_message
from tests.support.fakes import FakeContext, FakeSQSClient, RecordingReject, load_app, load_event
from tests.support.world import World, fetcher_handler, load_fetcher_app, row

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


def test_the_forwarder_packs_a_drained_batch_into_one_message_in_order() -> None:
    # Given a queue and 500 changes (a drained batch)
    sqs = FakeSQSClient()
    # When they are forwarded
    forward = QueueForwarder(sqs, QUEUE)
    forward.send([post(i) for i in range(500)])
    # Then one SendMessageBatch call carried them all, in one message, in order
    assert sqs.batch_calls == 1 and len(sqs.messages) == 1
    assert [c["pk"] for c in sqs.bodies()[0]["changes"]] == [{"id": i} for i in range(500)]
    assert forward.sent == {"changes": 500, "messages": 1, "requests": 1}


def test_the_forwarder_fills_each_message_up_to_the_size_limit_and_no_further() -> None:
    # Given a queue whose messages (and requests) hold 4 KiB, and changes of ~190 bytes each
    limit = 4096
    sqs = FakeSQSClient(max_message_bytes=limit)
    changes = [post(i, correlation_id=f"request-{i:04}") for i in range(200)]
    # When they are forwarded
    QueueForwarder(sqs, QUEUE, max_message_bytes=limit).send(changes)
    # Then every message is within the limit and the next change would not have fitted in it
    bodies = [m["MessageBody"] for m in sqs.messages]
    sizes = [len(b.encode()) for b in bodies]
    assert max(sizes) <= limit and len(bodies) > 1
    firsts = [json.dumps(json.loads(b)["changes"][0], separators=(",", ":")) for b in bodies]
    with_next = [size + len(",") + len(first.encode()) for size, first in zip(sizes[:-1], firsts[1:], strict=True)]
    assert all(size > limit for size in with_next)  # each message but the last is full
    # and each request is one full message (a request holds the limit of bodies together)
    assert sqs.batch_calls == len(bodies)
    # and nothing is lost or reordered
    assert [c["pk"]["id"] for b in bodies for c in json.loads(b)["changes"]] == list(range(200))


def test_a_packed_message_is_what_the_fetcher_reads_back_with_the_stage_times_it_carries() -> None:
    sqs = FakeSQSClient()
    change = post(1).stamped(Stage.RUNG, 1_764_240_000_100_000).stamped(Stage.DRAINED, 1_764_240_000_200_000)
    QueueForwarder(sqs, QUEUE).send([change, post(2)])
    read = [parse_change_message(m, default_mappings()) for m in sqs.bodies()[0]["changes"]]
    assert read == [post(1), post(2)]
    assert dict(read[0].stages).keys() == {Stage.RUNG, Stage.DRAINED, Stage.HANDED}
    assert dict(read[1].stages).keys() == {Stage.HANDED}


def test_a_message_the_queue_refuses_fails_the_forward_so_the_parser_invoke_is_retried() -> None:
    sqs = FakeSQSClient()
    sqs.refuse = lambda body: {"id": 2} in [c["pk"] for c in body["changes"]]
    with pytest.raises(RuntimeError, match=r"refused 1 of 1 messages \(3 changes\)"):
        QueueForwarder(sqs, QUEUE).send([post(1), post(2), post(3)])


def test_a_packed_message_whose_one_change_keeps_failing_acknowledges_its_neighbours_and_sends_it_on_alone() -> None:
    # Given posts 1 and 3, and post 2 whose read keeps failing, packed in one message
    world = World()
    world.source.set("posts", (1,), row(1, "one"), version=10)
    world.source.set("posts", (3,), row(3, "three"), version=10)
    world.source.fail("posts", (2,), SourceReadError("poisoned"))
    sqs = FakeSQSClient()
    fetcher = world.fetcher(reject=RecordingReject(), continuations=QueueForwarder(sqs, QUEUE))
    packed = {"changes": [post(1).to_message(), post(2).to_message(), post(3).to_message()]}
    # When the fetcher takes it
    answer = fetcher_handler(fetcher)(sqs_event(packed), FakeContext())
    # Then the packed message is acknowledged (its neighbours are applied) ...
    assert answer["batchItemFailures"] == []
    assert (world.document(1), world.document(2), world.document(3)) != (None, None, None)
    assert world.document(2) is None and world.item(2) is None
    assert world.titles(1) == ("one", "one") and world.titles(3) == ("three", "three")
    # ... and post 2 went back to the queue alone, so its own receives decide when it is dead-lettered
    assert [[c["pk"] for c in body["changes"]] for body in sqs.bodies()] == [[{"id": 2}]]
    # And that message, failing again, is retried by itself (a message of one change is never split)
    again = fetcher_handler(fetcher)(sqs_event(sqs.bodies()[0]), FakeContext())
    assert again["batchItemFailures"] == [{"itemIdentifier": "m0"}] and len(sqs.messages) == 1


def test_a_packed_message_whose_every_change_failed_is_retried_whole_not_split() -> None:
    # Given a source that is down
    world = World()
    for i in (1, 2):
        world.source.fail("posts", (i,), SourceReadError("connection refused"))
    sqs = FakeSQSClient()
    fetcher = world.fetcher(reject=RecordingReject(), continuations=QueueForwarder(sqs, QUEUE))
    packed = {"changes": [post(1).to_message(), post(2).to_message()]}
    answer = fetcher_handler(fetcher)(sqs_event(packed), FakeContext())
    # Then the message is retried as it is: nothing is multiplied into the queue during an outage
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}] and sqs.messages == []


def test_a_packed_message_is_retried_whole_when_its_failed_change_cannot_be_sent_on() -> None:
    world = World()
    world.source.set("posts", (1,), row(1, "one"), version=10)
    world.source.fail("posts", (2,), SourceReadError("poisoned"))
    sqs = FakeSQSClient()
    sqs.refuse = lambda body: True
    fetcher = world.fetcher(reject=RecordingReject(), continuations=QueueForwarder(sqs, QUEUE))
    packed = {"changes": [post(1).to_message(), post(2).to_message()]}
    answer = fetcher_handler(fetcher)(sqs_event(packed), FakeContext())
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}]


def test_a_packed_message_with_more_failed_changes_than_a_poisoning_explains_is_retried_whole() -> None:
    # Given post 1, and more posts whose reads fail than a poisoned change or two would explain (an outage)
    world = World()
    world.source.set("posts", (1,), row(1, "one"), version=10)
    failing = range(2, 2 + SPLIT_AT_MOST + 1)
    for i in failing:
        world.source.fail("posts", (i,), SourceReadError("lock wait timeout"))
    sqs = FakeSQSClient()
    fetcher = world.fetcher(reject=RecordingReject(), continuations=QueueForwarder(sqs, QUEUE))
    packed = {"changes": [post(1).to_message(), *(post(i).to_message() for i in failing)]}
    # When the fetcher takes the message
    answer = fetcher_handler(fetcher)(sqs_event(packed), FakeContext())
    # Then post 1 is applied, and the message is retried as it is: no send per failed change
    assert world.titles(1) == ("one", "one")
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}] and sqs.messages == []


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
    response = fetcher_handler(world.fetcher(reject))(event, FakeContext())
    # Then only post 2's message is retried, post 1 was read once, both sinks hold 1 and 3,
    # and the malformed body is recorded in the dead-letter queue (not retried)
    assert response["batchItemFailures"] == [{"itemIdentifier": "m1"}] and response["rejected"] == 1
    assert response["failures"] == ["posts/2: read failed: lock wait timeout"]  # for a redrive to show
    assert [c.key_values for c in world.source.reads].count((1,)) == 1
    assert world.titles(1) == ("one", "one") and world.titles(3) == ("three", "three")
    assert len(reject.rejections) == 1 and "changes" in reject.rejections[0].reason


def test_a_record_is_known_by_its_carried_correlation_id_only_if_the_pipeline_could_have_written_it() -> None:
    # Given two records whose invalid changes carry a correlation id: one the parser writes, one forged
    world = World()
    reject = RecordingReject()
    event = sqs_event(
        {"changes": [{"v": 1, "correlation_id": "fallback:17"}]},
        {"changes": [{"v": 1, "correlation_id": "forged\nline"}]},
    )
    # When the batch is handled
    response = fetcher_handler(world.fetcher(reject))(event, FakeContext())
    # Then the forged id is not repeated: that record is known by its message id (as the fetcher handler does)
    assert response == {"batchItemFailures": [], "rejected": 2}
    assert [r.correlation_id for r in reject.rejections] == ["fallback:17", "m1"]


def test_parser_settings_require_the_fetch_queue() -> None:
    base = {"DEAD_LETTER_QUEUE_URL": "d"}
    assert ParserSettings.from_env({**base, "FETCH_QUEUE_URL": QUEUE}).fetch_queue_url == QUEUE
    with pytest.raises(ConfigError, match="FETCH_QUEUE_URL"):
        ParserSettings.from_env(base)


def test_the_parser_handler_forwards_to_the_fetch_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq")
    monkeypatch.setenv("FETCH_QUEUE_URL", QUEUE)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    app = load_app("parser_fn/app.py", "parser_app_queued")
    try:
        queue, _, _ = app._dependencies()
    finally:
        app._dependencies.cache_clear()
    assert isinstance(queue, QueueForwarder)


# --------------------------------------------------------------------------- hostile SQS-shaped events

MALFORMED_SQS_EVENTS = {
    "fetcher_sqs_records_not_a_list.json": "Records: must be a non-empty list of SQS records",
    "fetcher_sqs_records_not_objects.json": "Records[0]: must be an SQS record (an object)",
    "fetcher_sqs_records_empty.json": "Records: must be a non-empty list of SQS records",
    "fetcher_sqs_record_without_message_id.json": "Records[1].messageId: must be a non-empty string",
    "fetcher_sqs_record_null_body.json": "Records[1].body: must be a string",
}


@pytest.mark.parametrize(("name", "reason"), MALFORMED_SQS_EVENTS.items())
def test_a_malformed_sqs_event_is_rejected_once_with_its_reason_and_nothing_is_applied(
    name: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the fetcher handler wired to the in-memory world (rows 1 and 2 exist)
    world = World()
    world.source.set("posts", (1,), row(1, "one"), version=10)
    world.source.set("posts", (2,), row(2, "two"), version=10)
    reject = RecordingReject()
    fetcher = world.fetcher(reject)
    app = load_fetcher_app()
    monkeypatch.setattr(app, "_fetcher", lambda: fetcher)
    # When an event shaped like an SQS batch but not one is invoked
    result = app.handler(load_event(name), FakeContext(aws_request_id="req-hostile"))
    # Then it is answered, not raised (no retry), with one rejection naming the field, and nothing written
    assert result == {"batchItemFailures": [], "rejected": 1, "reason": reason}
    assert [(r.reason, r.correlation_id) for r in reject.rejections] == [(reason, "req-hostile")]
    assert world.source.reads == []


def test_records_that_share_a_message_id_are_all_applied_and_a_failure_reports_the_id() -> None:
    # Given rows 1 and 2, and a batch holding both changes under one message id
    world = World()
    world.source.set("posts", (1,), row(1, "one"), version=10)
    world.source.set("posts", (2,), row(2, "two"), version=10)
    event = load_event("fetcher_sqs_duplicate_message_ids.json")
    # When it is handled
    response = fetcher_handler(world.fetcher(RecordingReject()))(event, FakeContext())
    # Then neither change was dropped
    assert response == {"batchItemFailures": []}
    assert world.titles(1) == ("one", "one") and world.titles(2) == ("two", "two")
    # And when the second one's read fails, the shared id is retried (not silently acknowledged)
    world.source.fail("posts", (2,), SourceReadError("lock wait timeout"))
    world.source.set("posts", (1,), row(1, "one again"), version=20)
    response = fetcher_handler(world.fetcher(RecordingReject()))(event, FakeContext())
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-1"}]


def test_a_record_with_an_invalid_change_that_is_retried_is_recorded_only_when_it_is_not_retried_any_more() -> None:
    # Given a record carrying an invalid change and a change whose read fails, and a valid record
    world = World()
    world.source.set("posts", (3,), row(3, "three"), version=10)
    world.source.fail("posts", (2,), SourceReadError("lock wait timeout"))
    reject = RecordingReject()
    event = sqs_event({"changes": [{"v": 1}, post(2, "b").to_message()]}, {"changes": [post(3, "c").to_message()]})
    # When the batch is delivered three times (the record retried each time)
    for _ in range(3):
        response = fetcher_handler(world.fetcher(reject))(event, FakeContext())
        assert response["batchItemFailures"] == [{"itemIdentifier": "m0"}]
    # Then no rejection was recorded yet: the record is retried (and dead-lettered whole, invalid change included)
    assert reject.rejections == []
    # And when its read succeeds at last, the invalid change is recorded once
    del world.source.failures[("posts", (2,))]
    world.source.set("posts", (2,), row(2, "two"), version=10)
    response = fetcher_handler(world.fetcher(reject))(event, FakeContext())
    assert response == {"batchItemFailures": [], "rejected": 1}
    assert len(reject.rejections) == 1 and reject.rejections[0].reason.startswith("changes[0].")


class InMemoryDeadLetterQueue:
    """The dead-letter queue as a redrive and the fetcher's reject both see it: a list of records."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def letters(self) -> list[DeadLetter]:
        return [parse_dead_letter(sqs_message(body, f"m-{i}"), RESOURCES) for i, body in enumerate(self.bodies)]

    def reject(self, reason: str, payload: Any, correlation_id: str) -> None:
        self.bodies.append(message_body(rejection_record("fetcher", reason, payload, correlation_id)))

    def delete(self, letter: DeadLetter) -> None:
        self.bodies.remove(letter.body)

    def keep_with_error(self, letter: DeadLetter, error: str) -> None:
        self.bodies.remove(letter.body)
        self.bodies.append(letter.body)


def test_redriving_a_malformed_sqs_event_leaves_one_dead_letter_however_often_it_is_redriven(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an SQS-shaped event whose first record carries an invalid change and whose second has a null body,
    # dead-lettered as a failed invoke of the fetcher
    event = load_event("fetcher_sqs_record_null_body.json")
    event["Records"][0]["body"] = json.dumps({"changes": [{"v": 1}]})
    dlq = InMemoryDeadLetterQueue()
    failed = dict(MINISTACK_RECORD, requestPayload=event)
    dlq.bodies.append(json.dumps(failed))
    # and redrive invoking the real handler, whose rejections land in the same queue
    world = World()
    fetcher = world.fetcher(dlq.reject)
    app = load_fetcher_app()
    monkeypatch.setattr(app, "_fetcher", lambda: fetcher)

    def invoke(function: str, payload: Any) -> InvokeResult:
        try:
            return InvokeResult(True, json.loads(json.dumps(app.handler(payload, FakeContext()))))
        except Exception as exc:  # noqa: BLE001 - what Lambda reports as a function error
            return InvokeResult(False, None, f"{type(exc).__name__}: {exc}")

    # When it is redriven three times
    for _ in range(3):
        redrive(dlq.letters(), dlq, invoke, default_mappings(), RESOURCES)  # type: ignore[arg-type]
        # Then the queue holds one record: the event's rejection, with the field that is wrong
        assert len(dlq.bodies) == 1
    [letter] = dlq.letters()
    assert (letter.kind, letter.reason) == (Kind.REJECTED, "Records[1].body: must be a string")
