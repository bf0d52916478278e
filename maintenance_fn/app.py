"""Maintenance handler: reconcile and `fanout check` on a schedule (metrics) and backfills that outlive one invocation.

Events::

    {"action": "reconcile", "sample": 1000, "tables": ["posts"], "repair": false}
    {"action": "check"}     the mapping, the triggers and the live schema compared; drifts as SchemaDrift
    {"action": "backfill", "table": "posts", "from": [1], "to": [5000], "where": "status = %s",
     "params": ["published"], "batch_size": 500, "rate": 2000, "pages_per_invocation": 100}
    {"action": "backfill", "table": "posts", "workers": 4, "rate": 4000}
    {"action": "backfill", "table": "posts", "events": true}   also publishes each row's change event (default: not)
    {"action": "reindex", "table": "posts", "workers": 2}      `fanout reindex posts`, resumed in new invocations
    {"action": "reindex", "table": "posts", "step": "rollback"}   (or "drop-old")

A backfill copies pages until little time is left (or ``pages_per_invocation``
pages are done: shorter invocations, e.g. to keep each one's load window
small), then, if rows remain, invokes this function again asynchronously with
the same event: the next invocation resumes from the checkpoint
(fanout.operations.backfill). With ``workers`` the table is split into that many key
ranges (the split is kept in the checkpoint table: sending the same event again
finds the same ranges) and this function is invoked once per range, each range
an ordinary backfill with its own checkpoint (``after``: the key it starts after)
and its share of ``rate``; they run as concurrent invocations. Send it again
only once those have stopped, to resume the ranges that are not done. A reindex
(fanout.operations.reindex) copies with ``workers`` threads until little time
is left, then invokes this function again with the same event, which resumes
from the same checkpoints and then verifies and swaps; its progress is logged
("reindex progress"). Domain
logic lives in the layer (fanout.operations.maintenance); this page wires it to Lambda.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from fanout import aws
from fanout.observability import instrumented_handler
from fanout.operations.maintenance import Maintenance, handle_event

TIME_MARGIN_MS = 60_000  # stop taking pages this long before Lambda stops the function


@lru_cache(maxsize=1)
def _dependencies() -> Maintenance:
    return Maintenance(source="maintenance")


@lru_cache(maxsize=1)
def _lambda_client() -> Any:
    return aws.client("lambda")


def _correlation_id(event: Any, context: Any) -> str:
    return str(context.aws_request_id)


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    def invoke_self(payload: dict[str, Any]) -> None:
        _lambda_client().invoke(
            FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=json.dumps(payload).encode()
        )

    return handle_event(
        event, _dependencies, invoke_self, lambda: context.get_remaining_time_in_millis() > TIME_MARGIN_MS
    )
