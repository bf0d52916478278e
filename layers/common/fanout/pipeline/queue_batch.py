"""The fetcher's entry: an SQS batch from the fetch queue, the one event shape the fetcher takes.

Each record is a message packed by the parser's forwarder (fanout.pipeline.fetch_queue): the changes of a drained
batch, as many as fit. The batch is applied *together* (coalesced per key, one locking read per table chunk,
``_bulk`` and the sinks side by side, fanout.pipeline.fetcher); the answer names exactly the records whose keys
failed (partial batch response), which become visible again and are retried until the queue's redrive policy
dead-letters them.

A packed message is never dead-lettered for a neighbour: when some of its changes failed and others were applied,
the failed ones are handed back to the queue one change a message (:func:`split_failed`) and the packed message
is acknowledged, so a change that keeps failing reaches the dead-letter queue alone, after its own receives.
When every change of a message failed (the database or a sink is down) the message is retried whole: splitting
it would multiply the messages an outage retries. Invalid changes are recorded in the dead-letter queue with their
reason once, by the attempt that is not retried; an event that is not an SQS batch at all is rejected whole
(:func:`sqs_event_problem`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fanout.deadline import Deadline
from fanout.model.change import CORRELATION_ID, Change, ChangeValidationError, Stage
from fanout.model.mapping import Mappings
from fanout.model.payloads import parse_change_message
from fanout.observability import UNKNOWN_TABLE, ChangeMetric, log, metric_table, record
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.pipeline.fetcher import Fetcher, FetchFailed, FetchReport
from fanout.pipeline.rejects import HeldRejects, Reject
from fanout.redaction import describe_error

MAX_ANSWERED_FAILURES = 10  # failure reasons in the answer (the log has them all)
SPLIT_AT_MOST = 10  # failed changes a packed message is split for; more: retried whole


def _json_body(body: Any) -> Any:
    try:
        return json.loads(body) if isinstance(body, str) else None
    except (ValueError, RecursionError):
        return None


def correlation_id_of(event: Any, default: str) -> str:
    """The correlation id an SQS batch carries (its first record's first change's; a record's body: its first change's),
    or ``default`` when it carries none the pipeline could have written (CORRELATION_ID).

    Read before the event is validated, so held to the same rule: it goes on every log line.
    """
    records = event.get("Records") if isinstance(event, dict) else None
    if isinstance(records, list) and records and isinstance(records[0], dict):
        event = _json_body(records[0].get("body"))
    changes = event.get("changes") if isinstance(event, dict) else None
    first = changes[0] if isinstance(changes, list) and changes and isinstance(changes[0], dict) else {}
    carried = first.get("correlation_id")
    if isinstance(carried, str) and carried and CORRELATION_ID.fullmatch(carried):
        return carried
    return default


def parse_fetcher_event(
    event: Any, mappings: Mappings, reject: Reject, correlation_id: str
) -> tuple[list[Change], int]:
    """Validate one record's body (``{"changes": [message, ...]}``); invalid messages are recorded, not retried."""
    messages = event.get("changes") if isinstance(event, dict) else None
    if not isinstance(messages, list):
        reason = 'fetcher event must be an object with a "changes" list'
        log(logging.WARNING, "event rejected", correlation_id=correlation_id, reason=reason)
        reject(reason, event, correlation_id)
        record(ChangeMetric.REJECTED, UNKNOWN_TABLE)
        return [], 1
    changes: list[Change] = []
    rejected = 0
    for i, message in enumerate(messages):
        try:
            changes.append(parse_change_message(message, mappings))
        except ChangeValidationError as exc:
            rejected += 1
            log(
                logging.WARNING,
                "change rejected",
                correlation_id=correlation_id,
                table=metric_table(message, mappings),
                field=f"changes[{i}].{exc.log_field}",
                reason=exc.reason,
            )
            reject(f"changes[{i}].{exc}", message, correlation_id)
            record(ChangeMetric.REJECTED, metric_table(message, mappings))
    return changes, rejected


def sqs_event_problem(event: dict[str, Any]) -> str | None:
    """Why ``event`` is not an SQS batch (the field and the rule), or None when it is one.

    Checked before anything is read or recorded: Lambda's SQS event source never sends such an event, so
    it comes from a direct invoke and is rejected whole, once, rather than crashing the
    handler and being retried.
    """
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        return "Records: must be a non-empty list of SQS records"
    for i, record_ in enumerate(records):
        if not isinstance(record_, dict):
            return f"Records[{i}]: must be an SQS record (an object)"
        message_id = record_.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            return f"Records[{i}].messageId: must be a non-empty string"
        if not isinstance(record_.get("body"), str):
            return f"Records[{i}].body: must be a string"
    return None


def handle_queue_batch(event: dict[str, Any], context: Any, fetcher: Fetcher) -> dict[str, Any]:
    """Apply every record's changes in one batch with ``fetcher``; answer with the records to retry (partial
    batch response). Invalid input is recorded with the fetcher's reject recorder.

    A record's invalid changes are recorded only once the record is not retried: a retried record would
    reject them again on each receive, and the record the redrive policy dead-letters still holds them.
    Records that share a message id (never from SQS itself) are one record: all their changes are applied,
    and the id is retried if any of them failed.
    """
    mappings, reject = fetcher.mappings, fetcher.reject
    if reject is None:
        raise ValueError("the fetcher's entry records invalid input: its fetcher needs a reject recorder")
    problem = sqs_event_problem(event)
    if problem is not None:
        request_id = str(getattr(context, "aws_request_id", ""))
        log(logging.WARNING, "event rejected", correlation_id=request_id, reason=problem)
        reject(problem, event, request_id)
        record(ChangeMetric.REJECTED, UNKNOWN_TABLE)
        return {"batchItemFailures": [], "rejected": 1, "reason": problem}

    fetched_us = time.time_ns() // 1000
    changes_of: dict[str, list[Change]] = {}
    held_of: dict[str, HeldRejects] = {}
    for message in event["Records"]:
        message_id, body = message["messageId"], message["body"]
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            pass  # not JSON: rejected as it came
        held = held_of.setdefault(message_id, HeldRejects())
        changes, _ = parse_fetcher_event(body, mappings, held, correlation_id_of(body, message_id))
        changes_of.setdefault(message_id, []).extend(c.stamped(Stage.FETCHED, fetched_us) for c in changes)

    report: FetchReport
    try:
        # bounded by the invocation's time left: what does not fit is answered as unprocessed, never killed mid-write
        deadline = Deadline.of_context(context)
        report = fetcher.apply(
            [change for changes in changes_of.values() for change in changes], deadline, messages=len(event["Records"])
        )
    except FetchFailed as exc:
        report = exc.report
    failing: list[str] = []
    rejected = 0
    for message_id, changes in changes_of.items():
        failed = [c for c in changes if (c.table, c.key) in report.failed_keys]
        deferred = any((c.table, c.key) in report.deferred_keys for c in failed)
        if failed and (deferred or not split_failed(message_id, changes, failed, fetcher.fan_out.continuations)):
            failing.append(message_id)
            continue
        recorded = len(held_of[message_id])
        try:
            held_of[message_id].record_with(reject)
        except Exception:  # noqa: BLE001 - not recorded: the record is retried instead
            failing.append(message_id)
            continue
        rejected += recorded
    # Answered here, not by Powertools' BatchProcessor: it handles records one by one, and this batch is
    # read and written as one (keys coalesced, one locking read per table chunk, _bulk). ``rejected`` (the
    # invalid changes recorded in the dead-letter queue) and ``failures`` (why keys failed), when there are
    # any, are for `fanout dlq redrive`; Lambda reads only batchItemFailures.
    answer: dict[str, Any] = {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failing]}
    if rejected:
        answer["rejected"] = rejected
    if report.failures:
        answer["failures"] = report.failures[:MAX_ANSWERED_FAILURES]
    return answer


def split_failed(message_id: str, changes: list[Change], failed: list[Change], queue: ChangeQueue | None) -> bool:
    """Hand a packed message's failed changes back to the queue, one change a message; True if they were, so
    the message itself is acknowledged (its other changes are applied).

    Not split: a message of one change, a message whose every change failed (retried whole, see the module), a
    message with more than SPLIT_AT_MOST failed changes (a poisoned change is one of a few; many failing at once is
    an outage, and a send per change would outlast the invocation), a message with a change that was only out of
    time (the caller keeps those whole: deferred is not poisoned), and any message when there is no forwarder or
    it fails (then the message is retried whole: re-applying its applied changes is harmless, their writes are
    version-gated).
    """
    if queue is None or len(failed) == len(changes) or len(failed) > SPLIT_AT_MOST:
        return False
    try:
        for change in failed:
            queue.send([change])
    except Exception as exc:  # noqa: BLE001 - not handed back: the whole message is retried instead
        log(logging.WARNING, "failed changes not split from their message", message_id=message_id,
            failed=len(failed), error=describe_error(exc))  # fmt: skip
        return False
    log(logging.WARNING, "failed changes split from their message", message_id=message_id,
        failed=len(failed), changes=len(changes))  # fmt: skip
    return True
