"""Sweeper handler: on a schedule, the safety net of capture.

When rows wait in the change log and no drainer is at work, it drains them itself, bounded by its own time
and ringing the parser to go on when it runs out (fanout.capture.sweep.sweep_once): a ring can be queued
behind a burst's rings or lost, a drain started here cannot, so no change waits longer than one period
without a drain. While a drainer is at work it rings the parser, as before. It publishes the log's depth and
oldest age.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fanout import aws
from fanout.capture.change_log import drain
from fanout.capture.ring import ring
from fanout.capture.sweep import sweep
from fanout.config import ParserSettings, SweeperSettings
from fanout.deadline import Deadline
from fanout.model.mapping import default_mappings
from fanout.observability import instrumented_handler
from fanout.pipeline.fetch_queue import make_forwarder
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.source.connection import ConnectionHolder

TIME_MARGIN_SECONDS = 12.0  # kept back from the timeout: a ring (2 x (2 s + 3 s) at most), the answer, the log flush


class _Dependencies:
    def __init__(self) -> None:
        from botocore.config import Config

        self.settings = SweeperSettings.from_env()
        handoff = ParserSettings.from_env()  # the sweeper drains as the parser does: the same queues
        default_mappings()  # validate the mapping at cold start, failing loudly
        self.database = ConnectionHolder.from_env()
        self.forward = make_forwarder(handoff.handoff)
        self.reject = QueueRejectRecorder(aws.client("sqs"), handoff.dead_letter_queue_url, source="sweeper")
        # Fail fast on an unreachable endpoint: the rows stay in the log, and the next run is a minute away.
        config = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2})
        self.lambda_client = aws.client("lambda", config=config)


@lru_cache(maxsize=1)
def _dependencies() -> _Dependencies:
    return _Dependencies()


def _correlation_id(event: Any, context: Any) -> str:
    return str(context.aws_request_id)


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    import pymysql

    deps = _dependencies()
    parser = deps.settings.parser_function_name
    try:
        conn = deps.database.get()
        result = sweep(
            conn,
            deps.lambda_client,
            parser,
            drain_here=lambda: drain(
                conn,
                default_mappings(),
                deps.forward,
                deps.reject,
                correlation_id=context.aws_request_id,
                deadline=Deadline.of_context(context, TIME_MARGIN_SECONDS),
                ring_successor=lambda: ring(deps.lambda_client, parser),
            ),
        )
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
        deps.database.close()  # the next run opens a fresh connection
        raise
    return result.as_dict()
