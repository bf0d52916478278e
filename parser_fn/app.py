"""Parser handler: a trigger's ring drains the change log into the fetch queue.

Domain logic lives in the layer (fanout.capture.change_log, fanout.pipeline.parser); this page wires it to AWS.
One event shape: the ring of the change-log triggers (format version 2), which makes this invocation a
drainer. Any other event is recorded in the dead-letter queue with the reason (fanout.pipeline.parser).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from fanout.coldstart import collector_paused

with collector_paused():  # the import: modules that live as long as the environment (fanout.coldstart)
    from fanout import aws
    from fanout.capture.change_log import DEFAULT_IDLE_SECONDS, drain
    from fanout.capture.ring import is_ring, ring
    from fanout.config import ParserSettings
    from fanout.deadline import Deadline
    from fanout.model.mapping import default_mappings
    from fanout.observability import instrumented_handler
    from fanout.pipeline.fetch_queue import QueueForwarder, RungAt, make_forwarder
    from fanout.pipeline.parser import reject_event
    from fanout.pipeline.rejects import QueueRejectRecorder
    from fanout.source.connection import ConnectionHolder

TIME_MARGIN_SECONDS = 8.0  # kept back from the timeout: the successor's ring (2 x (1 s + 2 s) at most), the answer


@lru_cache(maxsize=1)
def _dependencies() -> tuple[QueueForwarder, QueueRejectRecorder, Any]:
    """Built on the first invocation and reused (checked config, pooled clients), the collector paused while they
    are built (fanout.coldstart)."""
    with collector_paused():
        return _build_dependencies()


def _build_dependencies() -> tuple[QueueForwarder, QueueRejectRecorder, Any]:
    from botocore.config import Config

    settings = ParserSettings.from_env()
    default_mappings()  # validate the mapping at cold start, failing loudly
    queue = make_forwarder(settings.handoff)  # the fetch queue (fanout.pipeline.fetch_queue)
    reject = QueueRejectRecorder(aws.client("sqs"), settings.dead_letter_queue_url, source="parser")
    # The successor's ring fits in the margin: a short timeout, two attempts; if it fails, the sweeper drains.
    lambda_client = aws.client(
        "lambda", config=Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 2})
    )
    return queue, reject, lambda_client


@lru_cache(maxsize=2)
def _database(role: str) -> ConnectionHolder:
    """The drainer's connections, opened on the first ring (re-read from the secret when a login is refused):
    ``lock`` holds the drain lock and claims; ``send-ahead`` claims the next batch while the last one is sent."""
    return ConnectionHolder.from_env()


def _correlation_id(event: Any, context: Any) -> str:
    """A change is known by the request id of the parser invocation that received it."""
    return str(context.aws_request_id)


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    rung_us = time.time_ns() // 1000  # a stage of each change's lag (fanout.pipeline.stage_times)
    queue, reject, lambda_client = _dependencies()
    if not is_ring(event):
        return reject_event(event, reject, context.aws_request_id)
    import pymysql

    database, second = _database("lock"), _database("send-ahead")
    try:
        report = drain(
            database.get(),
            default_mappings(),
            RungAt(queue, rung_us),
            reject,
            correlation_id=context.aws_request_id,
            idle_seconds=DEFAULT_IDLE_SECONDS,
            deadline=Deadline.of_context(context, TIME_MARGIN_SECONDS),
            # out of time with rows left: a fresh invocation goes on at once (not a minute later, by the sweeper)
            ring_successor=lambda: ring(lambda_client, context.invoked_function_arn),
            second=second.get(),  # each batch's send overlaps the claim and parse of the next
        )
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
        database.close()  # Lambda retries the ring on fresh connections; the rows are still in the log
        second.close()
        raise
    return report.as_dict()
