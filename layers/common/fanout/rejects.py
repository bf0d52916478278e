"""Recording input that can never succeed, so it is neither retried forever nor lost.

A rejected payload goes to the dead-letter queue with the reason beside it,
where ``fanout dlq`` and an operator can see it. Failing to record raises, so
the invocation fails and Lambda's retries / on-failure destination take over.
"""

from __future__ import annotations

import json
from typing import Any

MAX_RECORDED_PAYLOAD_CHARS = 100_000
MAX_MESSAGE_BYTES = 250 * 1024  # SQS's default message cap is 256 KiB; keep a margin for attributes


def rejection_record(source: str, reason: str, payload: Any, correlation_id: str) -> dict[str, Any]:
    try:
        text = json.dumps(payload, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(payload)
    kept = text[:MAX_RECORDED_PAYLOAD_CHARS]
    truncated = len(kept) < len(text)
    return {
        "fanout_rejected": True,
        "rejected_by": source,
        "reason": reason,
        "correlation_id": correlation_id,
        "payload": kept,
        "payload_truncated": truncated,
    }


def message_body(record: dict[str, Any]) -> str:
    """The record as JSON, its payload cut further until the whole body fits one SQS message.

    Characters are not bytes: multi-byte UTF-8 and JSON escapes can make a
    100k-character payload several times larger once encoded.
    """
    while True:
        body = json.dumps(record, ensure_ascii=False)
        if len(body.encode("utf-8", "surrogatepass")) <= MAX_MESSAGE_BYTES:
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
