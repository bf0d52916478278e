"""Queued fetch mode: the parser sends changes to an SQS queue, the fetcher takes them in batches.

Parser side (:class:`QueueForwarder`): one message per change, sent with
``SendMessageBatch`` (10 entries a call); the body is a fetcher event with one
change (``{"changes": [message]}``), the same form the direct mode invokes the
fetcher with, so a message that lands in the dead-letter queue is replayed by
invoking the fetcher with its body. An entry the queue refuses is raised: the
parser's invoke is retried (a duplicate change is harmless; the re-read makes
them equivalent).

Fetcher side (:func:`handle_queue_batch`): every record's changes go through
:func:`fanout.fetcher.apply_changes` *together* (coalesced per key, one locking
read per table chunk, ``_bulk`` and parallel writes); then Powertools'
``BatchProcessor`` reports, as a partial batch response, exactly the records
whose keys failed. Those become visible again and are retried; after the
queue's ``maxReceiveCount`` receives the redrive policy moves them to the
dead-letter queue. A record whose body is not a valid change is recorded in the
dead-letter queue with its reason (``reject``) and is not retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .change import Change
from .fetcher import FetchFailed, FetchReport, ReadRow, ReadRows, Reject, apply_changes, parse_fetcher_event
from .mapping import Mappings
from .parser import fetcher_event
from .sinks import Sink

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


def handle_queue_batch(
    event: dict[str, Any],
    context: Any,
    mappings: Mappings,
    read_row: ReadRow,
    sinks: Sequence[Sink],
    reject: Reject,
    *,
    read_rows: ReadRows | None = None,
) -> dict[str, Any]:
    """Apply every record's changes in one batch; answer with the records to retry (partial batch response)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    records = event.get("Records") or []
    changes_of: dict[str, list[Change]] = {}
    for record in records:
        message_id = str(record.get("messageId", ""))
        correlation = message_id
        try:
            body = json.loads(record.get("body", ""))
        except ValueError:
            body = record.get("body")
        if isinstance(body, dict) and isinstance(body.get("changes"), list) and body["changes"]:
            first = body["changes"][0]
            carried = first.get("correlation_id") if isinstance(first, dict) else None
            correlation = carried if isinstance(carried, str) and carried else message_id
        changes_of[message_id], _ = parse_fetcher_event(body, mappings, reject, correlation)

    report: FetchReport
    try:
        report = apply_changes(
            [change for changes in changes_of.values() for change in changes],
            mappings,
            read_row,
            sinks,
            reject,
            read_rows=read_rows,
        )
    except FetchFailed as exc:
        report = exc.report
    failed_keys = report.failed_keys

    def record_handler(record: SQSRecord) -> None:
        failing = [c for c in changes_of.get(record.message_id, []) if (c.table, c.key) in failed_keys]
        if failing:
            raise FetchFailed(", ".join(f"{c.table}/{c.document_id}" for c in failing))

    # Every record failing is answered as a partial response too (all listed), not raised: same effect.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
