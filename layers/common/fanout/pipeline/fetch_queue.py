"""Queued fetch mode: the parser sends changes to an SQS queue, the fetcher takes them in batches.

Parser side (:class:`QueueForwarder`): one message per change, sent with
``SendMessageBatch`` (10 entries a call); the body is a fetcher event with one
change (``{"changes": [message]}``), the same form the direct mode invokes the
fetcher with, so a message that lands in the dead-letter queue is replayed by
invoking the fetcher with its body. An entry the queue refuses is raised: the
parser's invoke is retried (a duplicate change is harmless; the re-read makes
them equivalent).

Fetcher side (:func:`handle_queue_batch`): every record's changes go through
:func:`fanout.pipeline.fetcher.apply_changes` *together* (coalesced per key, one locking
read per table chunk, ``_bulk`` and parallel writes); then Powertools'
``BatchProcessor`` reports, as a partial batch response, exactly the records
whose keys failed. Those become visible again and are retried; after the
queue's ``maxReceiveCount`` receives the redrive policy moves them to the
dead-letter queue. A record whose body is not a valid change is recorded in the
dead-letter queue with its reason (``reject``) and is not retried; an event
that is not an SQS batch at all is rejected whole (:func:`sqs_event_problem`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import Mappings
from fanout.observability import UNKNOWN_TABLE, ChangeMetric, log
from fanout.observability import record as record_metric
from fanout.pipeline.fetcher import (
    FetchFailed,
    FetchReport,
    ReadRow,
    ReadRows,
    Reject,
    apply_changes,
    parse_fetcher_event,
)
from fanout.pipeline.parser import fetcher_event
from fanout.pipeline.rejects import HeldRejects
from fanout.pipeline.related import ResolveRoots
from fanout.redaction import describe_error
from fanout.sinks import Sink

SEND_BATCH_ENTRIES = 10  # SendMessageBatch's limit


class QueueForwarder:
    """Hands changes to the fetch queue, one message per change."""

    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def __call__(self, changes: Sequence[Change]) -> None:
        for start in range(0, len(changes), SEND_BATCH_ENTRIES):
            chunk = changes[start : start + SEND_BATCH_ENTRIES]
            response = self._sqs.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(fetcher_event([change]))} for i, change in enumerate(chunk)
                ],
            )
            failed = response.get("Failed") or []
            if failed:
                reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
                raise RuntimeError(f"the fetch queue refused {len(failed)} of {len(chunk)} changes: {reasons}")


def sqs_event_problem(event: dict[str, Any]) -> str | None:
    """Why ``event`` is not an SQS batch (the field and the rule), or None when it is one.

    Checked before anything is read or recorded: Lambda's SQS event source never sends such an event, so
    it comes from a direct invoke (or its redrive) and is rejected whole, once, rather than crashing the
    handler and being retried.
    """
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        return "Records: must be a non-empty list of SQS records"
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            return f"Records[{i}]: must be an SQS record (an object)"
        message_id = record.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            return f"Records[{i}].messageId: must be a non-empty string"
        if not isinstance(record.get("body"), str):
            return f"Records[{i}].body: must be a string"
    return None


def _correlation_of(body: Any, message_id: str) -> str:
    changes = body.get("changes") if isinstance(body, dict) else None
    first = changes[0] if isinstance(changes, list) and changes else None
    carried = first.get("correlation_id") if isinstance(first, dict) else None
    return carried if isinstance(carried, str) and carried else message_id


def handle_queue_batch(
    event: dict[str, Any],
    context: Any,
    mappings: Mappings,
    read_row: ReadRow,
    sinks: Sequence[Sink],
    reject: Reject,
    *,
    read_rows: ReadRows | None = None,
    resolve_roots: ResolveRoots | None = None,
) -> dict[str, Any]:
    """Apply every record's changes in one batch; answer with the records to retry (partial batch response).

    A record's invalid changes are recorded only once the record is not retried: a retried record would
    reject them again on each receive, and the record the redrive policy dead-letters still holds them.
    Records that share a message id (never from SQS itself) are one record: all their changes are applied,
    and the id is retried if any of them failed.
    """
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent, SQSRecord

    problem = sqs_event_problem(event)
    if problem is not None:
        request_id = str(getattr(context, "aws_request_id", ""))
        log(logging.WARNING, "event rejected", correlation_id=request_id, reason=problem)
        reject(problem, event, request_id)
        record_metric(ChangeMetric.REJECTED, UNKNOWN_TABLE)
        return {"batchItemFailures": [], "rejected": 1, "reason": problem}

    changes_of: dict[str, list[Change]] = {}
    held_of: dict[str, HeldRejects] = {}
    for message in SQSEvent(event).records:
        try:
            body: Any = json.loads(message.body)
        except ValueError:
            body = message.body
        held = held_of.setdefault(message.message_id, HeldRejects())
        changes, _ = parse_fetcher_event(body, mappings, held, _correlation_of(body, message.message_id))
        changes_of.setdefault(message.message_id, []).extend(changes)

    report: FetchReport
    try:
        report = apply_changes(
            [change for changes in changes_of.values() for change in changes],
            mappings,
            read_row,
            sinks,
            reject,
            read_rows=read_rows,
            resolve_roots=resolve_roots,
        )
    except FetchFailed as exc:
        report = exc.report
    failing: dict[str, str] = {}
    for message_id, changes in changes_of.items():
        failed = [c for c in changes if (c.table, c.key) in report.failed_keys]
        if failed:
            failing[message_id] = ", ".join(f"{c.table}/{c.document_id}" for c in failed)
            continue
        try:
            held_of[message_id].record_with(reject)
        except Exception as exc:  # noqa: BLE001 - not recorded: the record is retried instead
            failing[message_id] = f"recording its rejected change failed: {describe_error(exc)}"

    def record_handler(record: SQSRecord) -> None:  # Powertools passes it as record=
        if record.message_id in failing:
            raise FetchFailed(failing[record.message_id])

    # Every record failing is answered as a partial response too (all listed), not raised: same effect.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    identifiers = dict.fromkeys(item["itemIdentifier"] for item in response.get("batchItemFailures", []))
    return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}
