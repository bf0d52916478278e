"""Sweeper handler: on a schedule, the safety net of capture.

It rings the parser when rows wait in the change log (fanout.capture.change_log.ring_if_waiting:
a lost ring, a writer that outlived its drainer), so that no change waits longer than
one period, and publishes the log's depth and oldest age. It also still hands the
payloads the per-row triggers (before V006) parked in the fallback table to the parser.

Domain logic lives in the layer (fanout.capture.sweeper); this page wires it to
the database and AWS. A run that could not deliver everything raises, so the
function's Errors metric shows it; the rows stay for the next run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fanout.capture.change_log import ring_if_waiting
from fanout.capture.sweeper import SweeperSettings, sweep
from fanout.observability import instrumented_handler
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.source.connection import ConnectionHolder

TIME_MARGIN_MS = 10_000  # stop taking rows this long before Lambda stops the function


class FallbackSweepIncomplete(RuntimeError):
    """Some rows could not be delivered; they wait for the next run."""


class _Dependencies:
    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        self.settings = SweeperSettings.from_env()
        self.database = ConnectionHolder.from_env()
        # Fail fast on an unreachable endpoint: the row stays, and the next run is a minute away.
        config = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 2})
        self.lambda_client = boto3.client("lambda", config=config)
        self.reject = QueueRejectRecorder(boto3.client("sqs"), self.settings.dead_letter_queue_url, source="sweeper")


@lru_cache(maxsize=1)
def _dependencies() -> _Dependencies:
    return _Dependencies()


def _correlation_id(event: Any, context: Any) -> str:
    return str(context.aws_request_id)


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    import pymysql

    deps = _dependencies()
    try:
        report = sweep(
            deps.database.get(),
            deps.lambda_client,
            deps.reject,
            max_rows=deps.settings.max_rows,
            time_left=lambda: context.get_remaining_time_in_millis() > TIME_MARGIN_MS,
        )
        if deps.settings.parser_function and not report.busy:  # one sweeper at a time rings, too
            ring_if_waiting(deps.database.get(), deps.lambda_client, deps.settings.parser_function)
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
        deps.database.close()  # the next run opens a fresh connection
        raise
    if report.failed:
        raise FallbackSweepIncomplete(f"{report.failed} fallback row(s) not delivered: {report.as_dict()}")
    return report.as_dict()
