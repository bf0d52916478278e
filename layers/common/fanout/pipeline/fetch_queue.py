"""The fetch queue, both ends: the parser packs changes into its messages, the fetcher reads its SQS batches back.

The parser hands validated changes to a :class:`ChangeQueue` by its one method, ``send``; :class:`QueueForwarder`
is the one implementation outside tests. It packs the changes it is handed (a drained batch, already coalesced
per key) into as few messages as SQS's size limit allows: each body is a fetcher event (``{"changes": [message, ...]}``,
:func:`fanout.model.payloads.fetcher_event`) of at most MAX_MESSAGE_BYTES, the shape every record of the
fetcher's SQS batch carries. A ``SendMessageBatch`` request holds at most
SEND_BATCH_ENTRIES messages and MAX_MESSAGE_BYTES of bodies together, so a full message is a request of its own.
Each change is serialised once. A refused entry is raised: the parser's invoke is retried (a duplicate change is
harmless; the re-read makes them equivalent). The same forwarder hands on the fetcher's own continuations (a
change via a composed document's relation with roots left to rebuild, fanout.pipeline.related) and, one change a
call, the failed changes of a packed message, so that a change that keeps failing reaches the dead-letter queue
alone (:func:`split_failed`).

The fetcher's handler (fetcher_fn/app.py) reads an SQS batch of these messages back into changes
(:func:`read_batch`), applies them together with its ``Fetcher`` (coalesced per key, one locking read per table
chunk, ``_bulk`` and the sinks side by side, fanout.pipeline.fetcher) and answers with what
:meth:`ReceivedBatch.answer` builds: exactly the records whose keys failed (partial batch response), which become
visible again and are retried until the queue's redrive policy dead-letters them.

A packed message is never dead-lettered for a neighbour: when some of its changes failed and others were applied,
the failed ones are handed back to the queue one change a message (:func:`split_failed`) and the packed message
is acknowledged, so a change that keeps failing reaches the dead-letter queue alone, after its own receives.
When every change of a message failed (the database or a sink is down) the message is retried whole: splitting
it would multiply the messages an outage retries. Invalid changes are recorded in the dead-letter queue with their
reason once, by the attempt that is not retried; an event that is not an SQS batch at all is rejected whole
(:func:`sqs_event_problem`, :func:`reject_batch`).

Both ends of the queue's wire live here and import nothing of the fetcher, so that the parser imports no fetcher
code and the fetcher's modules (fanout.pipeline.fetcher, fanout.pipeline.related) can import the
:class:`ChangeQueue` they hand continuations to without importing themselves back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fanout import aws
from fanout.config import HandoffSettings
from fanout.model.change import CORRELATION_ID, Change, ChangeValidationError, KeyValue, Stage
from fanout.model.mapping import Mappings
from fanout.model.payloads import parse_change_message
from fanout.observability import UNKNOWN_TABLE, ChangeMetric, log, metric_table, record
from fanout.pipeline.rejects import HeldRejects, Reject
from fanout.redaction import describe_error

SEND_BATCH_ENTRIES = 10  # SendMessageBatch's limit
MAX_MESSAGE_BYTES = 256 * 1024  # SQS's limit on one message, and on one SendMessageBatch request's bodies together
_OPEN, _SEPARATOR, _CLOSE = '{"changes":[', ",", "]}"
_FRAME_BYTES = len(_OPEN) + len(_CLOSE)
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # ASCII only (ensure_ascii): a text's length is its size in bytes


def pack(changes: Sequence[Change], max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[tuple[str, int]]:
    """The message bodies that carry ``changes`` in order, each at most ``max_bytes`` of UTF-8, with how many
    changes each holds. A body is exactly ``json.dumps(fetcher_event(part))`` in compact form."""
    parts: list[str] = []
    size = _FRAME_BYTES
    for change in changes:
        text = _COMPACT.encode(change.to_message())
        grows = len(text) + (len(_SEPARATOR) if parts else 0)
        if parts and size + grows > max_bytes:
            yield _OPEN + _SEPARATOR.join(parts) + _CLOSE, len(parts)
            parts, size, grows = [], _FRAME_BYTES, grows - len(_SEPARATOR)
        if _FRAME_BYTES + grows > max_bytes:  # never from a valid change: a key is at most a few KB
            raise ValueError(f"{change.table}/{change.document_id}: its message alone exceeds {max_bytes} bytes")
        parts.append(text)
        size += grows
    if parts:
        yield _OPEN + _SEPARATOR.join(parts) + _CLOSE, len(parts)


class ChangeQueue(Protocol):
    """Where validated changes go next: the fetch queue (:class:`QueueForwarder`, built by
    :func:`make_forwarder`); a recording fake in tests."""

    def send(self, changes: Sequence[Change]) -> None:
        """Hand ``changes`` on, or raise (the caller keeps them and is retried)."""


class QueueForwarder:
    """Hands changes to the fetch queue, packed into as few messages (and requests) as the size limits allow.

    ``sent`` counts what it did (messages, requests, changes) for the drain report and the benchmarks.
    """

    def __init__(self, sqs_client: Any, queue_url: str, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._max_bytes = max_message_bytes
        self.sent = {"changes": 0, "messages": 0, "requests": 0}

    def send(self, changes: Sequence[Change]) -> None:
        self._send_bodies(pack(_handed(changes), self._max_bytes))

    def _send_bodies(self, bodies: Iterator[tuple[str, int]]) -> None:
        request: list[tuple[str, int]] = []
        request_bytes = 0
        for body, count in bodies:
            size = len(body.encode("utf-8"))
            if request and (len(request) == SEND_BATCH_ENTRIES or request_bytes + size > self._max_bytes):
                self._send(request)
                request, request_bytes = [], 0
            request.append((body, count))
            request_bytes += size
        if request:
            self._send(request)

    def _send(self, request: list[tuple[str, int]]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, (body, _) in enumerate(request)]
        response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        self.sent["requests"] += 1
        failed = response.get("Failed") or []
        if failed:
            reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            changes = sum(request[int(f["Id"])][1] for f in failed if str(f.get("Id", "")).isdigit())
            raise RuntimeError(
                f"the fetch queue refused {len(failed)} of {len(request)} messages ({changes} changes): {reasons}"
            )
        self.sent["messages"] += len(request)
        self.sent["changes"] += sum(count for _, count in request)


def _handed(changes: Sequence[Change]) -> list[Change]:
    """The changes stamped with the time they are handed to the queue (a stage of their lag)."""
    now_us = time.time_ns() // 1000
    return [change.stamped(Stage.HANDED, now_us) for change in changes]


class RungAt:
    """A :class:`ChangeQueue` stamping each change with the time the parser that hands it on was rung (``at_us``)."""

    def __init__(self, queue: ChangeQueue, at_us: int) -> None:
        self.queue = queue
        self.at_us = at_us

    def send(self, changes: Sequence[Change]) -> None:
        self.queue.send([change.stamped(Stage.RUNG, self.at_us) for change in changes])


def make_forwarder(settings: HandoffSettings, config: Any = None) -> QueueForwarder:
    """The forwarder to the fetch queue over an SQS client of its own: the parser's and the sweeper's (the fetcher's,
    for its continuations, shares its SQS client: fanout.pipeline.wiring); ``config`` is the client's botocore Config
    (None: botocore's defaults)."""
    return QueueForwarder(aws.client("sqs", config=config), settings.fetch_queue_url)


# --------------------------------------------------------------------------- the fetcher's end

MAX_ANSWERED_FAILURES = 10  # failure reasons in the answer (the log has them all)
SPLIT_AT_MOST = 10  # failed changes a packed message is split for; more: retried whole

TableKey = tuple[str, tuple[tuple[str, KeyValue], ...]]  # (table, key) of a change


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


def reject_batch(event: dict[str, Any], problem: str, reject: Reject | None, context: Any) -> dict[str, Any]:
    """Record an event that is not an SQS batch (``problem``, from :func:`sqs_event_problem`) whole, once; the
    answer retries nothing and says so (``rejected``, ``reason``)."""
    reject = _recorder(reject)
    request_id = str(getattr(context, "aws_request_id", ""))
    log(logging.WARNING, "event rejected", correlation_id=request_id, reason=problem)
    reject(problem, event, request_id)
    record(ChangeMetric.REJECTED, UNKNOWN_TABLE)
    return {"batchItemFailures": [], "rejected": 1, "reason": problem}


class KeysApplied(Protocol):
    """What the answer reads of a batch's outcome: fanout.pipeline.fetcher.FetchReport (not imported: the fetcher
    imports this module)."""

    failures: list[str]  # why keys failed
    failed_keys: set[TableKey]  # not applied: their records are retried
    deferred_keys: set[TableKey]  # failed only for want of time: never split from their message


@dataclass
class ReceivedBatch:
    """An SQS batch from the fetch queue read back into changes, per record (message id): its valid changes, and
    its invalid ones held until the record is known not to be retried."""

    changes_of: dict[str, list[Change]] = field(default_factory=dict)
    held_of: dict[str, HeldRejects] = field(default_factory=dict)
    records: int = 0

    @property
    def changes(self) -> list[Change]:
        """Every record's changes, in order: the batch the fetcher applies together."""
        return [change for changes in self.changes_of.values() for change in changes]

    def answer(self, report: KeysApplied, reject: Reject | None, queue: ChangeQueue | None) -> dict[str, Any]:
        """The partial batch response: the records whose keys failed (``report``) and were not split (``queue``,
        :func:`split_failed`); the invalid changes of every other record are recorded now with ``reject``."""
        reject = _recorder(reject)
        failing: list[str] = []
        rejected = 0
        for message_id, changes in self.changes_of.items():
            failed = [c for c in changes if (c.table, c.key) in report.failed_keys]
            deferred = any((c.table, c.key) in report.deferred_keys for c in failed)
            if failed and (deferred or not split_failed(message_id, changes, failed, queue)):
                failing.append(message_id)
                continue
            recorded = len(self.held_of[message_id])
            try:
                self.held_of[message_id].record_with(reject)
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


def read_batch(event: dict[str, Any], mappings: Mappings) -> ReceivedBatch:
    """Every record's changes of an SQS batch (checked by :func:`sqs_event_problem`), stamped with the time they
    were fetched; invalid changes are held per record, recorded by :meth:`ReceivedBatch.answer`.

    Records that share a message id (never from SQS itself) are one record: all their changes are applied, and the
    id is retried if any of them failed.
    """
    fetched_us = time.time_ns() // 1000
    batch = ReceivedBatch(records=len(event["Records"]))
    for message in event["Records"]:
        message_id, body = message["messageId"], message["body"]
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            pass  # not JSON: rejected as it came
        held = batch.held_of.setdefault(message_id, HeldRejects())
        changes, _ = parse_fetcher_event(body, mappings, held, correlation_id_of(body, message_id))
        batch.changes_of.setdefault(message_id, []).extend(c.stamped(Stage.FETCHED, fetched_us) for c in changes)
    return batch


def _recorder(reject: Reject | None) -> Reject:
    if reject is None:
        raise ValueError("the fetcher's handler records invalid input: its fetcher needs a reject recorder")
    return reject


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
