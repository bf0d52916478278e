"""The parser's side of the hand-off: changes go to the fetch queue, which the fetcher takes in batches.

The parser hands validated changes to a :class:`ChangeQueue` by its one method, ``send``; :class:`QueueForwarder`
is the one implementation outside tests. It packs the changes it is handed (a drained batch, already coalesced
per key) into as few messages as SQS's size limit allows: each body is a fetcher event (``{"changes": [message, ...]}``,
:func:`fanout.model.payloads.fetcher_event`) of at most MAX_MESSAGE_BYTES, the shape every record of the
fetcher's SQS batch carries (fanout.pipeline.queue_batch). A ``SendMessageBatch`` request holds at most
SEND_BATCH_ENTRIES messages and MAX_MESSAGE_BYTES of bodies together, so a full message is a request of its own.
Each change is serialised once. A refused entry is raised: the parser's invoke is retried (a duplicate change is
harmless; the re-read makes them equivalent). The same forwarder hands on the fetcher's own continuations (a
change via a composed document's relation with roots left to rebuild, fanout.pipeline.related) and, one change a
call, the failed changes of a packed message, so that a change that keeps failing reaches the dead-letter queue
alone (fanout.pipeline.queue_batch).

Kept apart from the fetcher's entry so that the parser imports no fetcher code, and the
fetcher's modules can import the forwarder without importing themselves back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from fanout.config import HandoffSettings
from fanout.model.change import Change, Stage

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
    """The forwarder to the fetch queue: the parser's, and the fetcher's for its continuations
    (fanout.pipeline.related); ``config`` is the client's botocore Config (None: botocore's defaults)."""
    import boto3

    return QueueForwarder(boto3.client("sqs", config=config), settings.fetch_queue_url)
