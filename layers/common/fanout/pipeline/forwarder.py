"""The parser's side of the hand-off: changes go to the fetch queue, which the fetcher takes in batches.

The parser hands validated changes to a :class:`ChangeQueue` by its one method, ``send``;
:class:`QueueForwarder` is the one implementation outside tests. It sends one message per change, ``SendMessageBatch``
10 entries a call. The body is a fetcher event (``{"changes": [message]}``,
:func:`fanout.model.change.fetcher_event`), the shape every record of the fetcher's SQS
batch carries (fanout.pipeline.queue_batch). A refused entry is raised: the parser's
invoke is retried (a duplicate change is harmless; the re-read makes them equivalent).
The same forwarder hands on the fetcher's own continuations (a change via a composed
document's relation with roots left to rebuild, fanout.pipeline.related).

Kept apart from the fetcher's entry so that the parser imports no fetcher code, and the
fetcher's modules can import the forwarder without importing themselves back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from fanout.config import HandoffSettings
from fanout.model.change import Change
from fanout.model.payloads import fetcher_event

SEND_BATCH_ENTRIES = 10  # SendMessageBatch's limit


class ChangeQueue(Protocol):
    """Where validated changes go next: the fetch queue (:class:`QueueForwarder`, built by
    :func:`make_forwarder`); a recording fake in tests."""

    def send(self, changes: Sequence[Change]) -> None:
        """Hand ``changes`` on, or raise (the caller keeps them and is retried)."""


class QueueForwarder:
    """Hands changes to the fetch queue, one message per change, SEND_BATCH_ENTRIES a request."""

    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def send(self, changes: Sequence[Change]) -> None:
        for start in range(0, len(changes), SEND_BATCH_ENTRIES):
            self._send(changes[start : start + SEND_BATCH_ENTRIES])

    def _send(self, chunk: Sequence[Change]) -> None:
        entries = [{"Id": str(i), "MessageBody": json.dumps(fetcher_event([change]))} for i, change in enumerate(chunk)]
        response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise RuntimeError(f"the fetch queue refused {len(failed)} of {len(chunk)} changes: {reasons}")


def make_forwarder(settings: HandoffSettings, config: Any = None) -> QueueForwarder:
    """The forwarder to the fetch queue: the parser's, and the fetcher's for its continuations
    (fanout.pipeline.related); ``config`` is the client's botocore Config (None: botocore's defaults)."""
    import boto3

    return QueueForwarder(boto3.client("sqs", config=config), settings.fetch_queue_url)
