"""EventBridge sink: one versioned entity event per applied change, on the stack's event bus.

For every change the fetcher applies to a table whose mapping turns events on (``"eventbridge": {"enabled":
true}``), one event, built from the row as re-read (or the document as composed)::

    Source      "fanout"
    DetailType  "<table> upserted" | "<table> deleted"
    Detail      {"table", "key": {<key column>: value, ...}, "version", "action": "upsert" | "delete",
                 "document": <what OpenSearch receives; absent for a delete>, "changed_at": "<ISO 8601, UTC>"}

``version`` is the number the other sinks are gated on. An entry above EventBridge's 256 KB is sent without
``document`` and with ``"truncated": true`` (never dropped): the consumer reads the entity from OpenSearch or
DynamoDB, or the source.

Delivery (README.md, "Change events"): at least once; a consumer keeps the highest ``version`` per key and drops
the rest; events for one key may arrive out of order (Lambda runs fetchers side by side, a retry publishes
again); a duplicate has the same version. EventBridge takes no condition, so this sink never answers STALE:
every applied change is published, and ordering is the consumer's, by version.

``PutEvents`` takes at most 10 entries and 256 KB a request; the requests of a batch are sent
MAX_PARALLEL_REQUESTS at once (bench/results/events.md). A request answers per entry: an entry that failed
with a retryable ``ErrorCode`` (ThrottlingException, InternalFailure) is sent again, alone of the others that
succeeded, after a full-jitter backoff (:func:`fanout.retry.attempts`, MAX_SENDS sends in all); one still
failing so after the last send is a SinkError, like a whole call that fails (after botocore's retries): the
fetch queue retries the change (the other sinks answer it as already held, the event is published again, same
version), so load alone never dead-letters an event; only after the queue's own receive limit does the change
reach the dead-letter queue. An entry that failed with any other code (AccessDenied, MalformedDetail, ...) is not
retried; a request refused whole (ValidationException) is sent again entry by entry, so that only the entry at
fault is refused. An event refused so is the row's RowRejected: the fetcher records the change in the
dead-letter queue naming this sink (``eventbridge: ...``; replayed with ``fanout dlq redrive``) and still writes
the other sinks.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import simplejson

from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.model.sink_keys import UnrepresentableRow
from fanout.observability import ChangeMetric, record
from fanout.retry import attempts
from fanout.sinks import Outcome, RowRejected, SinkError
from fanout.sinks.opensearch import opensearch_document
from fanout.source.rows import RowState

SOURCE = "fanout"
MAX_ENTRIES = 10  # PutEvents' entries a request
MAX_REQUEST_BYTES = 256 * 1024  # PutEvents' request size, entries counted as EventBridge counts them
RETRYABLE_CODES = frozenset({"ThrottlingException", "InternalFailure", "InternalException"})
# Entries a request answered as failed with a retryable code: this many sends in all, with full-jitter backoff
# from BACKOFF_SECONDS (whole calls are botocore's to retry: fanout.pipeline.wiring.aws_config).
MAX_SENDS = 6
BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
# Requests of one batch in flight at once, as the DynamoDB sink's writes (below botocore's 10 pooled connections).
MAX_PARALLEL_REQUESTS = 8


def _json(value: Any) -> str:
    """Exact JSON (a Decimal keeps its digits, as in the OpenSearch document), compact, UTF-8 text."""
    return str(simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":")))


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it against 256 KB ("Calculating PutEvents event entry size")."""
    size = 14 if "Time" in entry else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name, "")).encode("utf-8"))
    return size + sum(len(str(resource).encode("utf-8")) for resource in entry.get("Resources", ()))


def changed_at(change: Change) -> str:
    """The trigger's time of the change, ISO 8601 in UTC with microseconds."""
    moment = dt.datetime.fromtimestamp(change.changed_at_us / 1_000_000, tz=dt.UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def event_detail(mapping: TableMapping, change: Change, state: RowState) -> dict[str, Any]:
    """The event's Detail for one row state (UnrepresentableRow or TypeError if no document can be built)."""
    detail: dict[str, Any] = {
        "table": mapping.table,
        "key": dict(change.key),
        "version": state.version,
        "action": "delete" if state.row is None else "upsert",
    }
    if state.row is not None:
        detail["document"] = opensearch_document(mapping, state.row)
    detail["changed_at"] = changed_at(change)
    return detail


def event_entry(bus_name: str, mapping: TableMapping, change: Change, state: RowState) -> dict[str, Any]:
    """The PutEvents entry for one row state: whole, or without its document (``truncated``) if too big."""
    detail = event_detail(mapping, change, state)
    entry = {
        "EventBusName": bus_name,
        "Source": SOURCE,
        "DetailType": f"{mapping.table} {'deleted' if state.row is None else 'upserted'}",
        "Detail": _json(detail),
    }
    if entry_size(entry) > MAX_REQUEST_BYTES:
        detail.pop("document", None)
        detail["truncated"] = True
        entry["Detail"] = _json(detail)
    return entry


@dataclass(frozen=True)
class _Event:
    position: int  # the row's place in the batch
    entry: dict[str, Any]
    size: int
    done: Outcome  # WRITTEN (an upsert published) or DELETED (a delete published)
    where: str


def requests(events: list[_Event]) -> list[list[_Event]]:
    """The events cut into PutEvents requests: at most MAX_ENTRIES entries and MAX_REQUEST_BYTES each, in order."""
    chunks: list[list[_Event]] = []
    current: list[_Event] = []
    size = 0
    for event in events:
        if current and (len(current) >= MAX_ENTRIES or size + event.size > MAX_REQUEST_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(event)
        size += event.size
    if current:
        chunks.append(current)
    return chunks


class EventBridgeSink:
    """Publishes each applied change of an events-enabled table on one bus (``client``: a boto3 events client)."""

    name = "eventbridge"

    def __init__(self, client: Any, bus_name: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client  # boto3 clients are thread-safe: the requests of a batch share it
        self._bus_name = bus_name
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None  # created on the first batch of several requests, reused

    def enabled_for(self, mapping: TableMapping) -> bool:
        return mapping.eventbridge.enabled

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        outcome = self.apply_batch(mapping, [(change, state)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """Each row's event, up to 10 a PutEvents request; per row its Outcome (WRITTEN or DELETED: published)
        or its exception (RowRejected: never publishable; SinkError: the call failed, or the entry was still
        throttled after MAX_SENDS sends: the change is retried)."""
        results: list[Outcome | Exception | None] = [None] * len(items)
        events: list[_Event] = []
        for position, (change, state) in enumerate(items):
            where = f"{mapping.table}/{change.document_id}"
            try:
                entry = event_entry(self._bus_name, mapping, change, state)
            except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no JSON form
                results[position] = RowRejected(f"EventBridge cannot carry {where}: {exc}")
                continue
            done = Outcome.DELETED if state.row is None else Outcome.WRITTEN
            events.append(_Event(position, entry, entry_size(entry), done, where))
        chunks = requests(events)
        if len(chunks) == 1:
            self._publish(chunks[0], results)
        elif chunks:  # each request fills its own rows' places in ``results``
            if self._pool is None:
                self._pool = ThreadPoolExecutor(MAX_PARALLEL_REQUESTS, thread_name_prefix="eventbridge-sink")
            for future in [self._pool.submit(self._publish, chunk, results) for chunk in chunks]:
                future.result()
        published = sum(1 for result in results if isinstance(result, Outcome))
        if published:
            record(ChangeMetric.EVENTS_PUBLISHED, mapping.table, self.name, value=published)
        record(ChangeMetric.EVENTS_FAILED, mapping.table, self.name, value=len(items) - published)
        return [result if result is not None else SinkError("no PutEvents answer") for result in results]

    def _publish(self, request: list[_Event], results: list[Outcome | Exception | None]) -> None:
        """One request's events, the failed entries sent again alone after a backoff while their code is retryable."""
        from botocore.exceptions import BotoCoreError, ClientError

        pending = request
        last_error = ""
        for _ in attempts(MAX_SENDS, first_wait=BACKOFF_SECONDS, most_wait=MAX_BACKOFF_SECONDS, sleep=self._sleep):
            try:
                response = self._client.put_events(Entries=[event.entry for event in pending])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ValidationException":  # the request as a whole
                    self._refused(pending, results, exc)
                    return
                for event in pending:  # after botocore's own retries: the queue retries them
                    results[event.position] = SinkError(f"EventBridge PutEvents failed for {event.where}: {exc}")
                return
            except BotoCoreError as exc:
                for event in pending:
                    results[event.position] = SinkError(f"EventBridge PutEvents failed for {event.where}: {exc}")
                return
            answers = response.get("Entries") or []
            if len(answers) != len(pending):  # no per-entry answer: every entry is sent again
                answers = [{"ErrorCode": "InternalFailure", "ErrorMessage": "no answer for the entry"}] * len(pending)
            again: list[_Event] = []
            for event, answer in zip(pending, answers, strict=True):
                code = answer.get("ErrorCode")
                if not code:
                    results[event.position] = event.done
                elif code in RETRYABLE_CODES:
                    again.append(event)
                    last_error = f"{code}: {answer.get('ErrorMessage', '')}"
                else:
                    results[event.position] = RowRejected(
                        f"EventBridge refused the event of {event.where}: {code}: {answer.get('ErrorMessage', '')}"
                    )
            if not again:
                return
            pending = again
        for event in pending:  # still throttled (load, not a bad event): the fetch queue retries the change
            results[event.position] = SinkError(
                f"EventBridge did not publish the event of {event.where} after {MAX_SENDS} sends: {last_error}"
            )

    def _refused(self, request: list[_Event], results: list[Outcome | Exception | None], error: Exception) -> None:
        """A request refused whole (ValidationException): each entry is sent alone, so that only the entry at
        fault is rejected; alone and refused, it is (no retry can make it valid)."""
        if len(request) == 1:
            results[request[0].position] = RowRejected(f"EventBridge refused the event of {request[0].where}: {error}")
            return
        for event in request:
            self._publish([event], results)
