"""The SQS dead-letter queue: its depth, every message read without consuming it, and a record kept with its error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fanout_cli.dead_letters.records import (
    FIRST_SENT_AT,
    MAX_ERROR_CHARS,
    REDRIVE_COUNT,
    REDRIVE_ERROR,
    DeadLetter,
    parse_dead_letter,
)
from fanout_cli.stack_resources import StackResources


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_depth(sqs: Any, queue_url: str) -> QueueDepth:
    """An SQS queue's approximate counts: waiting, in flight, delayed."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return QueueDepth(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


class DeadLetterQueue:
    """The SQS dead-letter queue, read without losing anything.

    Reading holds messages invisible (``hold_seconds``) so that one pass sees
    each message once; whatever is not deleted or re-sent is released again
    (visibility 0) by :meth:`release`, and would reappear by itself after
    ``hold_seconds`` if the process died.
    """

    def __init__(self, sqs: Any, queue_url: str, resources: StackResources) -> None:
        self._sqs = sqs
        self.url = queue_url
        self._resources = resources

    def depth(self) -> QueueDepth:
        return queue_depth(self._sqs, self.url)

    def hold_all(self, hold_seconds: int = 60, limit: int = 1000) -> list[DeadLetter]:
        """Every visible message (up to ``limit``), held invisible for ``hold_seconds``."""
        letters: dict[str, DeadLetter] = {}
        while len(letters) < limit:
            response = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, limit - len(letters)),
                VisibilityTimeout=hold_seconds,
                WaitTimeSeconds=1,  # long polling asks every SQS server, so an empty answer means empty
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                letter = parse_dead_letter(message, self._resources)
                letters[letter.message_id] = letter
        return list(letters.values())

    def release(self, letters: Iterable[DeadLetter]) -> None:
        """Make held messages visible again at once."""
        for letter in letters:
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
                )
            except Exception:  # noqa: BLE001, S110 - it becomes visible by itself when the hold ends
                pass

    def delete(self, letter: DeadLetter) -> None:
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)

    def keep_with_error(self, letter: DeadLetter, error: str) -> None:
        """Leave the record in the queue with the error of this redrive beside it.

        The record is sent again, unchanged, with the redrive attributes, and
        only then is the previous copy deleted: a crash in between leaves a
        duplicate (harmless: replays are idempotent), never a loss.
        """
        attributes = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
            for name, value in letter.attributes.items()
            if name not in (REDRIVE_COUNT, REDRIVE_ERROR, FIRST_SENT_AT) and "StringValue" in value
        }
        attributes[REDRIVE_COUNT] = {"DataType": "Number", "StringValue": str(letter.redrive_count + 1)}
        attributes[REDRIVE_ERROR] = {"DataType": "String", "StringValue": (error or "failed")[:MAX_ERROR_CHARS]}
        attributes[FIRST_SENT_AT] = {"DataType": "Number", "StringValue": str(letter.sent_at_ms)}
        self._sqs.send_message(QueueUrl=self.url, MessageBody=letter.body, MessageAttributes=attributes)
        self.delete(letter)
