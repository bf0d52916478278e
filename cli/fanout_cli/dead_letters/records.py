"""The dead-letter queue's records, understood: three formats, one :class:`DeadLetter`.

The queue receives three kinds of record:

**Rejected input** (``fanout.pipeline.rejects``), written by the parser or the fetcher::

    {"fanout_rejected": true, "rejected_by": "parser", "reason": "pk.id: ...",
     "correlation_id": "...", "payload": "<the input, as JSON text>", "payload_truncated": false}

**Failed asynchronous invokes**, written by Lambda's on-failure destination
(``EventInvokeConfig``) once its retries are spent. AWS documents this record::

    {"version": "1.0", "timestamp": "2019-11-14T18:16:05.568Z",
     "requestContext": {"requestId": "e4b4...", "functionArn": "arn:...:function:name:$LATEST",
                        "condition": "RetriesExhausted", "approximateInvokeCount": 3},
     "requestPayload": {...the event...},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "responsePayload": {"errorMessage": "...", "errorType": "...", "stackTrace": [...]}}

ministack 1.5.33 (the local stack) sends a smaller record: no ``version``,
``timestamp``, ``requestContext.requestId`` or ``responseContext.executedVersion``;
``functionArn`` without the ``:$LATEST`` qualifier; ``approximateInvokeCount``
always 3. So nothing here requires those fields: a record is a failed invoke
when it has ``requestContext.functionArn`` and ``requestPayload``, and the time
comes from the queue's ``SentTimestamp`` (both send it).

**Queued changes** the fetch queue gave up on (its redrive
policy moves a message here after ``maxReceiveCount`` receives): the message
itself, a fetcher event with one change (``fanout.pipeline.fetch_queue``)::

    {"changes": [{"v": 1, "action": "update", "table": "posts", "pk": {"id": 42}, ...}]}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fanout_cli.stack_resources import StackResources

# Message attributes a redrive adds to a record it leaves in the queue (fanout_cli.dead_letters.queue).
REDRIVE_COUNT = "fanout-redrive-count"
REDRIVE_ERROR = "fanout-redrive-error"
FIRST_SENT_AT = "fanout-first-sent-at"  # epoch milliseconds of the first time the record was queued
MAX_ERROR_CHARS = 1000


class Kind(StrEnum):
    REJECTED = "rejected"
    FAILED_INVOKE = "failed-invoke"
    QUEUED_CHANGE = "queued-change"
    UNKNOWN = "unknown"


@dataclass
class DeadLetter:
    """One message of the dead-letter queue, understood."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, dict[str, Any]]
    sent_at_ms: int  # when it was first queued (kept across redrives)
    receive_count: int
    kind: Kind
    source: str  # parser / fetcher (the function that rejected or failed), "" if not one of the stack's
    function: str  # for a failed invoke, the function ARN in the record
    tables: tuple[str, ...]
    reason: str
    correlation_id: str
    payload: Any  # what a redrive submits (decoded), None when it cannot be replayed
    payload_truncated: bool = False
    redrive_count: int = 0
    last_redrive_error: str = ""

    def age_seconds(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.sent_at_ms / 1000)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "kind": self.kind.value,
            "source": self.source,
            "tables": list(self.tables),
            "reason": self.reason,
            "correlation_id": self.correlation_id,
            "sent_at": _iso(self.sent_at_ms),
            "age_seconds": round(self.age_seconds(now), 1),
            "receive_count": self.receive_count,
            "redrive_count": self.redrive_count,
            "last_redrive_error": self.last_redrive_error,
        }

    def detail(self) -> dict[str, Any]:
        try:
            record: Any = json.loads(self.body)
        except ValueError:
            record = self.body
        return {**self.summary(), "function": self.function, "record": record}


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms / 1000)) + f".{epoch_ms % 1000:03d}Z"


def _string_attribute(attributes: dict[str, dict[str, Any]], name: str) -> str:
    value = attributes.get(name, {}).get("StringValue", "")
    return value if isinstance(value, str) else ""


def _tables_of(payload: Any) -> tuple[str, ...]:
    """Tables a trigger payload, change message or fetcher event names (as given; for display and filters)."""
    if isinstance(payload, dict) and isinstance(payload.get("changes"), list):
        names = [c.get("table") for c in payload["changes"] if isinstance(c, dict)]
    elif isinstance(payload, dict):
        names = [payload.get("table")]
    else:
        names = []
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str)))


def _error_of(record: dict[str, Any]) -> str:
    context = record.get("requestContext") or {}
    response = record.get("responsePayload")
    parts = [str(context.get("condition", "")).strip()]
    if isinstance(response, dict):
        error_type, message = response.get("errorType", ""), response.get("errorMessage", "")
        parts.append(f"{error_type}: {message}" if error_type else str(message))
    elif response:
        parts.append(str(response))
    else:
        function_error = (record.get("responseContext") or {}).get("functionError")
        if function_error:
            parts.append(str(function_error))
    return ": ".join(p for p in parts if p)[:MAX_ERROR_CHARS]


def parse_dead_letter(message: dict[str, Any], resources: StackResources) -> DeadLetter:
    """A queue message (as ``ReceiveMessage`` returns it, with all attributes) as a :class:`DeadLetter`."""
    body = str(message.get("Body", ""))
    attributes: dict[str, dict[str, Any]] = message.get("MessageAttributes") or {}
    system = message.get("Attributes") or {}
    first_sent = _string_attribute(attributes, FIRST_SENT_AT)
    sent_at_ms = int(first_sent) if first_sent.isdigit() else int(system.get("SentTimestamp", "0") or 0)
    count = _string_attribute(attributes, REDRIVE_COUNT)
    letter = DeadLetter(
        message_id=str(message.get("MessageId", "")),
        receipt_handle=str(message.get("ReceiptHandle", "")),
        body=body,
        attributes=attributes,
        sent_at_ms=sent_at_ms,
        receive_count=int(system.get("ApproximateReceiveCount", "0") or 0),
        kind=Kind.UNKNOWN,
        source="",
        function="",
        tables=(),
        reason="not a fanout dead-letter record",
        correlation_id="",
        payload=None,
        redrive_count=int(count) if count.isdigit() else 0,
        last_redrive_error=_string_attribute(attributes, REDRIVE_ERROR),
    )
    try:
        record = json.loads(body)
    except ValueError:
        return letter
    if not isinstance(record, dict):
        return letter
    if record.get("fanout_rejected") is True:
        letter.kind = Kind.REJECTED
        letter.source = str(record.get("rejected_by", ""))
        letter.reason = str(record.get("reason", ""))
        letter.correlation_id = str(record.get("correlation_id", ""))
        letter.payload_truncated = bool(record.get("payload_truncated"))
        raw = record.get("payload")
        try:
            letter.payload = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            letter.payload = raw  # recorded as text that is not JSON; it can only be re-rejected
        letter.tables = _tables_of(letter.payload)
        return letter
    context = record.get("requestContext")
    if isinstance(context, dict) and context.get("functionArn") and "requestPayload" in record:
        letter.kind = Kind.FAILED_INVOKE
        letter.function = str(context["functionArn"])
        letter.source = resources.role_of(letter.function)
        letter.payload = record["requestPayload"]
        letter.tables = _tables_of(letter.payload)
        letter.reason = _error_of(record)
        letter.correlation_id = str(context.get("requestId", ""))
        changes = letter.payload.get("changes") if isinstance(letter.payload, dict) else None
        if isinstance(changes, list) and changes and isinstance(changes[0], dict):
            letter.correlation_id = str(changes[0].get("correlation_id", "")) or letter.correlation_id
        return letter
    changes = record.get("changes")
    if isinstance(changes, list) and changes and all(isinstance(c, dict) for c in changes):
        letter.kind = Kind.QUEUED_CHANGE
        letter.source = "fetcher"
        letter.payload = record
        letter.tables = _tables_of(record)
        letter.reason = "the fetch queue gave up on it after its maxReceiveCount receives (see the fetcher's logs)"
        letter.correlation_id = str(changes[0].get("correlation_id", ""))
    return letter
