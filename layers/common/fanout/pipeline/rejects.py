"""Recording input that can never succeed, so it is neither retried forever nor lost.

A rejected payload goes to the dead-letter queue with the reason beside it,
where ``fanout dlq`` and an operator can see it. Failing to record raises, so
the invocation fails and Lambda's retries / on-failure destination take over.

The record is the one place a rejected payload is kept whole: log lines carry
only the field and the reason (docs/security.md). Whatever the payload holds
(lone surrogates, U+FFFF, NUL, nesting deeper than the JSON encoder allows, an
integer too long to print), the record is built and accepted by SQS: its body
is ASCII JSON, so every character SQS refuses travels as a JSON escape and
decodes back to exactly what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# How rejected input is recorded: reject(reason, payload, correlation_id).
Reject = Callable[[str, Any, str], None]

MAX_RECORDED_PAYLOAD_CHARS = 100_000
MAX_MESSAGE_BYTES = 250 * 1024  # SQS's default message cap is 256 KiB; keep a margin for attributes
MAX_RECORDED_DEPTH = 64  # deeper parts of a payload that JSON cannot encode are recorded as a marker


def _recordable(value: Any, depth: int = 0) -> Any:
    """A JSON-encodable copy of ``value``, bounded in depth; used only when the payload cannot be encoded as is."""
    if depth >= MAX_RECORDED_DEPTH:
        return "<nested too deeply to record>"
    if isinstance(value, dict):
        return {str(k): _recordable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recordable(v, depth + 1) for v in value]
    if value is None or isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 4096 else f"<integer of {value.bit_length()} bits>"
    try:
        return repr(value)[:MAX_RECORDED_PAYLOAD_CHARS]
    except Exception:  # noqa: BLE001 - a record must be made whatever the object does
        return f"<unprintable {type(value).__name__}>"


def payload_text(payload: Any) -> tuple[str, bool]:
    """The payload as JSON text, and whether it had to be simplified to be encoded at all."""
    try:
        return json.dumps(payload, default=repr, ensure_ascii=False), False
    except (TypeError, ValueError, RecursionError):  # too deep, an unprintable integer, a failing repr
        return json.dumps(_recordable(payload), default=repr, ensure_ascii=False), True


def rejection_record(source: str, reason: str, payload: Any, correlation_id: str) -> dict[str, Any]:
    text, simplified = payload_text(payload)
    kept = text[:MAX_RECORDED_PAYLOAD_CHARS]
    truncated = len(kept) < len(text)
    record = {
        "fanout_rejected": True,
        "rejected_by": source,
        "reason": reason,
        "correlation_id": correlation_id,
        "payload": kept,
        "payload_truncated": truncated,
    }
    if simplified:
        record["payload_simplified"] = True
    return record


def message_body(record: dict[str, Any]) -> str:
    """The record as ASCII JSON, its payload cut further until the whole body fits one SQS message.

    ASCII because SQS accepts only some Unicode characters in a body (no lone
    surrogates, no U+FFFE/U+FFFF); JSON escapes carry the others exactly.
    Characters are not bytes: escapes can make a 100k-character payload several
    times larger once encoded.
    """
    while True:
        body = json.dumps(record, ensure_ascii=True)
        if len(body) <= MAX_MESSAGE_BYTES:
            return body
        record = {**record, "payload": record["payload"][: len(record["payload"]) // 2], "payload_truncated": True}


class QueueRejectRecorder:
    """Sends rejection records to an SQS queue (the dead-letter queue)."""

    def __init__(self, sqs_client: Any, queue_url: str, source: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._source = source

    def __call__(self, reason: str, payload: Any, correlation_id: str) -> None:
        record = rejection_record(self._source, reason, payload, correlation_id)
        self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=message_body(record),
            MessageAttributes={
                "fanout-rejected-by": {"DataType": "String", "StringValue": self._source},
            },
        )


class HeldRejects:
    """Rejections held until the attempt's outcome is known: recorded (:meth:`record_with`) or dropped.

    An attempt that fails is retried with the same input, which rejects the same
    part again: recording on every attempt wrote one dead letter per retry. The
    input that is retried, or dead-lettered whole once retries are spent, still
    carries what was rejected, so holding the rejection loses nothing.
    """

    def __init__(self) -> None:
        self.held: list[tuple[str, Any, str]] = []

    def __call__(self, reason: str, payload: Any, correlation_id: str) -> None:
        self.held.append((reason, payload, correlation_id))

    def __len__(self) -> int:
        return len(self.held)

    def record_with(self, reject: Any) -> None:
        """Record every held rejection with ``reject`` (raises as it does: the attempt then fails)."""
        while self.held:
            reject(*self.held[0])
            self.held.pop(0)
