"""Fetcher handler: re-reads each changed row from MySQL and writes it to OpenSearch and DynamoDB.

Two event shapes (fanout.pipeline.handoff). Queued mode, an SQS batch: the answer lists
the records to retry (partial batch response); the queue's redrive policy dead-letters
them. Direct mode, one invoke's changes: raising (FetchFailed) makes Lambda retry the
event and, once retries are spent, send it to the dead-letter queue. Either way invalid
input is recorded in the dead-letter queue once, by the attempt that is not retried.
The database, the sinks, the reject recorder and the forwarder of continuations (a change via a composed
document's relation with more roots than one invocation rebuilds) come from fanout.pipeline.wiring.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fanout.model.mapping import default_mappings
from fanout.observability import instrumented_handler
from fanout.pipeline.handoff import correlation_id_of, handle_fetcher_event
from fanout.pipeline.wiring import FetchPath


@lru_cache(maxsize=1)
def _dependencies() -> FetchPath:
    """Built on the first invocation (checked config, validated mapping) and reused."""
    return FetchPath(source="fetcher", continuations=True)


def _correlation_id(event: Any, context: Any) -> str:
    """The parser's request id, carried in each change message (a queued batch logs each change's own id too)."""
    return correlation_id_of(event, str(context.aws_request_id))


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    return handle_fetcher_event(event, context, default_mappings(), _dependencies())
