"""Dead letters: both on-failure record formats understood, filters, and what a redrive does to the queue."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from fanout.model.mapping import default_mappings
from fanout_cli.dead_letters.invoke import InvokeResult
from fanout_cli.dead_letters.records import (
    FIRST_SENT_AT,
    REDRIVE_COUNT,
    REDRIVE_ERROR,
    DeadLetter,
    Kind,
    parse_dead_letter,
)
from fanout_cli.dead_letters.redrive import RedriveOutcome, fetch_batch, plan_redrive, redrive
from fanout_cli.dead_letters.selection import Filter
from fanout_cli.stack_resources import function_name_of
from tests.support.dead_letters import (
    AWS_RECORD,
    FETCHER_EVENT,
    MINISTACK_RECORD,
    RESOURCES,
    SENT_MS,
    rejected,
    sqs_message,
)
from tests.support.fakes import load_event

MAPPINGS = default_mappings()
# --------------------------------------------------------------------------- understanding records


@pytest.mark.parametrize("record", [AWS_RECORD, MINISTACK_RECORD], ids=["aws", "ministack"])
def test_a_failed_invoke_is_understood_in_both_formats(record: dict[str, Any]) -> None:
    letter = parse_dead_letter(sqs_message(json.dumps(record)), RESOURCES)

    assert letter.kind is Kind.FAILED_INVOKE
    assert letter.source == "fetcher"
    assert letter.tables == ("posts",)
    assert letter.payload == FETCHER_EVENT
    assert letter.correlation_id == "sample-correlation-id"  # carried in the change message
    assert letter.reason.startswith("RetriesExhausted: ") and "opensearch failed" in letter.reason
    assert letter.sent_at_ms == SENT_MS


def test_a_failed_parser_invoke_names_the_table_of_its_trigger_payload() -> None:
    record = {
        **MINISTACK_RECORD,
        "requestContext": {**MINISTACK_RECORD["requestContext"], "functionArn": "fanout-prod-parser"},
        "requestPayload": load_event("update.json"),
    }

    letter = parse_dead_letter(sqs_message(json.dumps(record)), RESOURCES)

    assert (letter.kind, letter.source, letter.tables) == (Kind.FAILED_INVOKE, "parser", ("posts",))


def test_a_rejection_record_is_understood() -> None:
    letter = rejected("parser", load_event("malformed.json"))

    assert (letter.kind, letter.source, letter.tables) == (Kind.REJECTED, "parser", ("posts",))
    assert letter.payload == load_event("malformed.json")
    assert letter.reason == "pk.id: must be an integer"
    assert letter.correlation_id == "req-rejected"


@pytest.mark.parametrize("body", ["not json", "[1, 2]", json.dumps({"hello": "world"})])
def test_anything_else_is_unknown_and_never_replayed(body: str) -> None:
    letter = parse_dead_letter(sqs_message(body), RESOURCES)

    assert letter.kind is Kind.UNKNOWN
    assert plan_redrive(letter, MAPPINGS).function_role == ""


def test_a_redriven_record_keeps_its_first_queue_time_and_shows_its_last_error() -> None:
    attributes = {
        FIRST_SENT_AT: {"DataType": "Number", "StringValue": "1700000000000"},
        REDRIVE_COUNT: {"DataType": "Number", "StringValue": "2"},
        REDRIVE_ERROR: {"DataType": "String", "StringValue": "FetchFailed: refused"},
    }

    letter = parse_dead_letter(sqs_message(json.dumps(AWS_RECORD), attributes=attributes), RESOURCES)

    assert (letter.sent_at_ms, letter.redrive_count, letter.last_redrive_error) == (
        1700000000000,
        2,
        "FetchFailed: refused",
    )


@pytest.mark.parametrize(
    ("function", "name"),
    [
        ("fanout-prod-fetcher", "fanout-prod-fetcher"),
        ("arn:aws:lambda:us-east-1:123456789012:function:fanout-prod-fetcher", "fanout-prod-fetcher"),
        ("arn:aws:lambda:us-east-1:123456789012:function:fanout-prod-fetcher:$LATEST", "fanout-prod-fetcher"),
    ],
)
def test_function_names_are_compared_without_arn_or_qualifier(function: str, name: str) -> None:
    assert function_name_of(function) == name
    assert RESOURCES.role_of(function) == "fetcher"


# --------------------------------------------------------------------------- filters


def test_filters_select_by_table_source_kind_id_and_age() -> None:
    letter = parse_dead_letter(sqs_message(json.dumps(AWS_RECORD), "m-9"), RESOURCES)
    now = SENT_MS / 1000 + 3600  # an hour after it was queued

    assert Filter().matches(letter, now)
    assert Filter(tables=("posts",), sources=("fetcher",), kinds=(Kind.FAILED_INVOKE,)).matches(letter, now)
    assert not Filter(tables=("users",)).matches(letter, now)
    assert not Filter(sources=("parser",)).matches(letter, now)
    assert not Filter(kinds=(Kind.REJECTED,)).matches(letter, now)
    assert Filter(ids=("m-9",)).matches(letter, now) and not Filter(ids=("m-8",)).matches(letter, now)
    assert Filter(older_than_seconds=1800).matches(letter, now)
    assert not Filter(older_than_seconds=7200).matches(letter, now)
    assert Filter(newer_than_seconds=7200).matches(letter, now)
    assert not Filter(newer_than_seconds=1800).matches(letter, now)


# --------------------------------------------------------------------------- planning a redrive


def test_a_failed_invoke_of_the_fetcher_is_replayed_on_it_as_a_batch_of_one_record() -> None:
    letter = parse_dead_letter(sqs_message(json.dumps(AWS_RECORD), "m-failed"), RESOURCES)

    plan = plan_redrive(letter, MAPPINGS)

    assert (plan.function_role, plan.payload) == ("fetcher", fetch_batch("m-failed", FETCHER_EVENT))


def test_a_failed_ring_is_replayed_on_the_parser() -> None:
    record = {
        **MINISTACK_RECORD,
        "requestContext": {**MINISTACK_RECORD["requestContext"], "functionArn": "fanout-prod-parser"},
        "requestPayload": load_event("ring.json"),
    }

    plan = plan_redrive(parse_dead_letter(sqs_message(json.dumps(record)), RESOURCES), MAPPINGS)

    assert (plan.function_role, plan.payload) == ("parser", load_event("ring.json"))


def test_a_rejected_change_log_row_that_is_now_valid_goes_to_the_fetcher_as_its_changes() -> None:
    # Given a change-log row the parser's drainer rejected, valid under the current mapping
    plan = plan_redrive(rejected("parser", load_event("update_primary_key.json"), message_id="m-row"), MAPPINGS)

    # Then its changes (the new key and the old) go to the fetcher, in the fetcher's one event shape
    assert plan.function_role == "fetcher"
    [record] = plan.payload["Records"]
    assert record["messageId"] == "m-row"
    assert [m["pk"] for m in json.loads(record["body"])["changes"]] == [{"id": 2}, {"id": 1}]


def test_a_rejected_change_message_that_is_now_valid_goes_back_to_the_fetcher_as_a_batch() -> None:
    message = FETCHER_EVENT["changes"][0]

    plan = plan_redrive(rejected("fetcher", message, message_id="m-msg"), MAPPINGS)

    assert (plan.function_role, plan.payload) == ("fetcher", fetch_batch("m-msg", {"changes": [message]}))


def test_a_payload_that_is_still_invalid_is_kept_with_the_reason() -> None:
    plan = plan_redrive(rejected("parser", load_event("malformed.json")), MAPPINGS)

    assert plan.function_role == ""
    assert plan.reason.startswith("still invalid: pk.id: must be an integer")


def test_a_truncated_payload_is_never_replayed() -> None:
    letter = rejected("parser", load_event("update.json"))
    letter.payload_truncated = True

    assert "truncated" in plan_redrive(letter, MAPPINGS).reason


# --------------------------------------------------------------------------- redrive and the queue


class RecordingQueue:
    """The two things a redrive does to the queue, remembered."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.kept: list[tuple[str, str]] = []

    def delete(self, letter: DeadLetter) -> None:
        self.deleted.append(letter.message_id)

    def keep_with_error(self, letter: DeadLetter, error: str) -> None:
        self.kept.append((letter.message_id, error))


class RecordingInvoke:
    def __init__(self, *answers: InvokeResult) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, function: str, payload: Any) -> InvokeResult:
        self.calls.append((function, payload))
        return self.answers.pop(0)


def test_redrive_deletes_what_succeeds_and_keeps_what_fails_again_with_its_error() -> None:
    # Given a failed fetch, a now-valid rejected payload, and a still-invalid one
    failed = parse_dead_letter(sqs_message(json.dumps(MINISTACK_RECORD), "m-failed"), RESOURCES)
    valid = rejected("parser", load_event("update.json"), message_id="m-valid")
    invalid = rejected("parser", load_event("malformed.json"), message_id="m-invalid")
    queue = RecordingQueue()
    invoke = RecordingInvoke(
        InvokeResult(True, {"batchItemFailures": [{"itemIdentifier": "m-failed"}], "failures": ["posts/1: boom"]}),
        InvokeResult(True, {"batchItemFailures": []}),
    )

    # When
    results = redrive([failed, valid, invalid], queue, invoke, MAPPINGS, RESOURCES)  # type: ignore[arg-type]

    # Then the failed fetch was sent to the fetcher again, as a batch of one, and kept: the fetcher failed it again
    assert [function for function, _ in invoke.calls] == ["fanout-prod-fetcher", "fanout-prod-fetcher"]
    assert invoke.calls[0][1] == fetch_batch("m-failed", FETCHER_EVENT)
    assert [(r.letter.message_id, r.outcome) for r in results] == [
        ("m-failed", RedriveOutcome.KEPT),
        ("m-valid", RedriveOutcome.REPLAYED),
        ("m-invalid", RedriveOutcome.KEPT),
    ]
    assert queue.deleted == ["m-valid"]
    assert queue.kept[0] == ("m-failed", "the fetcher failed it again: posts/1: boom")
    assert queue.kept[1][0] == "m-invalid" and queue.kept[1][1].startswith("still invalid: pk.id")


def test_a_fetcher_that_raises_keeps_the_letter_with_its_error() -> None:
    letter = parse_dead_letter(sqs_message(json.dumps(AWS_RECORD), "m-failed"), RESOURCES)
    queue = RecordingQueue()
    invoke = RecordingInvoke(InvokeResult(False, {"errorType": "KeyError"}, "KeyError: 'x'"))

    [result] = redrive([letter], queue, invoke, MAPPINGS, RESOURCES)  # type: ignore[arg-type]

    assert result.outcome is RedriveOutcome.KEPT and queue.kept == [("m-failed", "KeyError: 'x'")]


def test_a_payload_the_deployed_fetcher_rejects_again_is_replaced_by_its_new_record() -> None:
    queue = RecordingQueue()
    invoke = RecordingInvoke(InvokeResult(True, {"batchItemFailures": [], "rejected": 1}))

    [result] = redrive([rejected("parser", load_event("update.json"))], queue, invoke, MAPPINGS, RESOURCES)  # type: ignore[arg-type]

    assert result.outcome is RedriveOutcome.REJECTED_AGAIN
    assert queue.deleted == ["m-1"]  # the fetcher recorded a fresh dead letter with its current reason


def test_an_invoke_that_raises_keeps_the_letter() -> None:
    queue = RecordingQueue()

    def broken(function: str, payload: Any) -> InvokeResult:
        raise ConnectionError("endpoint unreachable")

    letter = parse_dead_letter(sqs_message(json.dumps(AWS_RECORD)), RESOURCES)
    [result] = redrive([letter], queue, broken, MAPPINGS, RESOURCES)  # type: ignore[arg-type]

    assert result.outcome is RedriveOutcome.KEPT and "endpoint unreachable" in result.detail
    assert queue.deleted == [] and queue.kept[0][0] == "m-1"


def test_a_dry_run_invokes_nothing_and_changes_nothing() -> None:
    queue = RecordingQueue()
    invoke = RecordingInvoke()
    letters = [
        parse_dead_letter(sqs_message(json.dumps(AWS_RECORD), "m-a"), RESOURCES),
        rejected("parser", load_event("malformed.json"), message_id="m-b"),
    ]

    results = redrive(letters, queue, invoke, MAPPINGS, RESOURCES, dry_run=True)  # type: ignore[arg-type]

    assert [r.outcome for r in results] == [RedriveOutcome.WOULD_REPLAY, RedriveOutcome.WOULD_KEEP]
    assert (invoke.calls, queue.deleted, queue.kept) == ([], [], [])


def test_ages_are_measured_from_the_first_time_the_record_was_queued() -> None:
    letter = parse_dead_letter(sqs_message(json.dumps(AWS_RECORD)), RESOURCES)

    assert letter.age_seconds(now=SENT_MS / 1000 + 90) == 90
    assert letter.summary(now=time.time())["sent_at"] == "2025-11-27T10:40:00.000Z"


def test_a_queued_change_the_fetch_queue_gave_up_on_is_replayed_on_the_fetcher_with_its_body() -> None:
    # Given the body of a fetch-queue message, moved here by the queue's redrive policy
    letter = parse_dead_letter(sqs_message(json.dumps(FETCHER_EVENT)), RESOURCES)
    # Then it is understood as a queued change of the fetcher, and replayed on the fetcher as a batch of one record
    assert (letter.kind, letter.source, letter.tables) == (Kind.QUEUED_CHANGE, "fetcher", ("posts",))
    plan = plan_redrive(letter, MAPPINGS)
    assert (plan.function_role, plan.payload) == ("fetcher", fetch_batch(letter.message_id, FETCHER_EVENT))
