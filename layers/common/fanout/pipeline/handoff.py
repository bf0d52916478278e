"""The hand-off from the parser to the fetcher, both ends: the forwarders and the fetcher's entry.

Parser side: a forwarder takes validated changes. Queued mode (:class:`QueueForwarder`, the
default) sends one message per change to the fetch queue with ``SendMessageBatch`` (10 entries a
call); direct mode (:class:`LambdaForwarder`) invokes the fetcher asynchronously. Either way the
body is a fetcher event (``{"changes": [message, ...]}``, :func:`fanout.model.payloads.fetcher_event`),
so a message that lands in the dead-letter queue is replayed by invoking the fetcher with it. A
refused entry or invoke is raised: the parser's invoke is retried (a duplicate change is harmless;
the re-read makes them equivalent). :func:`make_forwarder` builds the configured one, for the parser and for
the fetcher's own continuations (a change via a composed document's relation with roots left to rebuild).

Fetcher side (:func:`handle_fetcher_event`, for both event shapes): a direct event is applied
whole, and raising (FetchFailed) makes Lambda retry it and, once retries are spent, dead-letter it.
An SQS batch (:func:`handle_queue_batch`) is applied *together* (coalesced per key, one locking
read per table chunk, ``_bulk`` and parallel writes); the answer names exactly the records whose
keys failed (partial batch response), which become visible again and are retried until the
queue's redrive policy dead-letters them. Invalid changes are recorded in the dead-letter queue
with their reason once, by the attempt that is not retried; an event that is not an SQS batch at
all is rejected whole (:func:`sqs_event_problem`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fanout.config import HandoffSettings
from fanout.model.change import CORRELATION_ID, Change, ChangeValidationError
from fanout.model.mapping import Mappings
from fanout.model.payloads import fetcher_event, parse_change_message
from fanout.observability import UNKNOWN_TABLE, ChangeMetric, log, metric_table, record
from fanout.pipeline.rejects import HeldRejects, Reject

if TYPE_CHECKING:  # the fetcher side's imports wait for the fetcher: the parser imports this module too
    from fanout.pipeline.fetcher import FetchReport, ReadRow, ReadRows
    from fanout.pipeline.related import FanOut
    from fanout.pipeline.wiring import FetchPath
    from fanout.sinks import Sink

Forward = Callable[[Sequence[Change]], None]
SEND_BATCH_ENTRIES = 10  # SendMessageBatch's limit
# A drained batch may hold hundreds of changes; an async invoke takes at most 256 KB, and a change
# message with the longest keys is about 1.2 KB.
DIRECT_CHANGES_PER_INVOKE = 100


# --------------------------------------------------------------------------- parser side


class _Forwarder:
    """Hands changes on in chunks of ``chunk_size`` (a chunk: one request), each sent by ``_send``."""

    chunk_size = 1

    def __init__(self, client: Any, target: str) -> None:
        self._client = client
        self._target = target  # the queue's URL, the function's name

    def __call__(self, changes: Sequence[Change]) -> None:
        for start in range(0, len(changes), self.chunk_size):
            self._send(changes[start : start + self.chunk_size])

    def _send(self, chunk: Sequence[Change]) -> None:
        raise NotImplementedError


class QueueForwarder(_Forwarder):
    """Hands changes to the fetch queue, one message per change, SEND_BATCH_ENTRIES a request."""

    chunk_size = SEND_BATCH_ENTRIES

    def _send(self, chunk: Sequence[Change]) -> None:
        entries = [{"Id": str(i), "MessageBody": json.dumps(fetcher_event([change]))} for i, change in enumerate(chunk)]
        response = self._client.send_message_batch(QueueUrl=self._target, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise RuntimeError(f"the fetch queue refused {len(failed)} of {len(chunk)} changes: {reasons}")


class LambdaForwarder(_Forwarder):
    """Hands changes to the fetcher function with an asynchronous (Event) invoke, DIRECT_CHANGES_PER_INVOKE each."""

    chunk_size = DIRECT_CHANGES_PER_INVOKE

    def _send(self, chunk: Sequence[Change]) -> None:
        payload = json.dumps(fetcher_event(chunk)).encode("utf-8")
        response = self._client.invoke(FunctionName=self._target, InvocationType="Event", Payload=payload)
        status = response.get("StatusCode")
        if status != 202:
            raise RuntimeError(f"async invoke of {self._target} answered {status}, expected 202")


def make_forwarder(settings: HandoffSettings, config: Any = None) -> Forward:
    """The forwarder of the configured fetch mode: the parser's, and the fetcher's for its continuations
    (fanout.pipeline.related); ``config`` is the clients' botocore Config (None: botocore's defaults)."""
    import boto3

    if settings.fetch_mode == "queued":  # FetchMode=queued: batches for the fetcher
        return QueueForwarder(boto3.client("sqs", config=config), settings.fetch_queue_url)
    return LambdaForwarder(boto3.client("lambda", config=config), settings.fetcher_function_name)


# --------------------------------------------------------------------------- fetcher side


def _json_body(body: Any) -> Any:
    try:
        return json.loads(body) if isinstance(body, str) else None
    except (ValueError, RecursionError):
        return None


def correlation_id_of(event: Any, default: str) -> str:
    """The correlation id a fetcher event carries (its first change's; an SQS batch's: its first record's),
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
    """Validate the fetcher's event; invalid change messages are recorded, not retried."""
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


def handle_fetcher_event(event: Any, context: Any, mappings: Mappings, deps: FetchPath) -> dict[str, Any]:
    """Either shape of fetcher event: an SQS batch (FetchMode=queued) or a direct invoke's event."""
    from fanout.pipeline.fetcher import apply_changes

    read_row, read_rows, sinks, reject = deps.read_row, deps.read_rows, deps.sinks, deps.reject
    fan_out = deps.fan_out
    if isinstance(event, dict) and "Records" in event:
        return handle_queue_batch(
            event, context, mappings, read_row, sinks, reject, read_rows=read_rows, fan_out=fan_out
        )
    # Rejections wait for the outcome: a failed event is retried whole (then dead-lettered whole), and
    # recording them on every attempt wrote one dead letter per retry.
    held = HeldRejects()
    changes, rejected = parse_fetcher_event(event, mappings, held, str(context.aws_request_id))
    report = apply_changes(changes, mappings, read_row, sinks, held, read_rows=read_rows, fan_out=fan_out)
    held.record_with(reject)
    report.rejected = rejected
    return report.as_dict()


def sqs_event_problem(event: dict[str, Any]) -> str | None:
    """Why ``event`` is not an SQS batch (the field and the rule), or None when it is one.

    Checked before anything is read or recorded: Lambda's SQS event source never sends such an event, so
    it comes from a direct invoke (or its redrive) and is rejected whole, once, rather than crashing the
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


def handle_queue_batch(
    event: dict[str, Any],
    context: Any,
    mappings: Mappings,
    read_row: ReadRow,
    sinks: Sequence[Sink],
    reject: Reject,
    *,
    read_rows: ReadRows | None = None,
    fan_out: FanOut | None = None,
) -> dict[str, Any]:
    """Apply every record's changes in one batch; answer with the records to retry (partial batch response).

    A record's invalid changes are recorded only once the record is not retried: a retried record would
    reject them again on each receive, and the record the redrive policy dead-letters still holds them.
    Records that share a message id (never from SQS itself) are one record: all their changes are applied,
    and the id is retried if any of them failed.
    """
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent

    from fanout.pipeline.fetcher import FetchFailed, apply_changes

    problem = sqs_event_problem(event)
    if problem is not None:
        request_id = str(getattr(context, "aws_request_id", ""))
        log(logging.WARNING, "event rejected", correlation_id=request_id, reason=problem)
        reject(problem, event, request_id)
        record(ChangeMetric.REJECTED, UNKNOWN_TABLE)
        return {"batchItemFailures": [], "rejected": 1, "reason": problem}

    changes_of: dict[str, list[Change]] = {}
    held_of: dict[str, HeldRejects] = {}
    for message in SQSEvent(event).records:
        try:
            body: Any = message.json_body
        except ValueError:
            body = message.body
        held = held_of.setdefault(message.message_id, HeldRejects())
        changes, _ = parse_fetcher_event(body, mappings, held, correlation_id_of(body, message.message_id))
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
            fan_out=fan_out,
        )
    except FetchFailed as exc:
        report = exc.report
    failing: list[str] = []
    for message_id, changes in changes_of.items():
        if any((c.table, c.key) in report.failed_keys for c in changes):
            failing.append(message_id)
            continue
        try:
            held_of[message_id].record_with(reject)
        except Exception:  # noqa: BLE001 - not recorded: the record is retried instead
            failing.append(message_id)
    # Answered here, not by Powertools' BatchProcessor: it handles records one by one, and this batch is
    # read and written as one (keys coalesced, one locking read per table chunk, _bulk).
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failing]}
