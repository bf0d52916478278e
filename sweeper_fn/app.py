"""Sweeper handler: on a schedule, the safety net of capture.

It rings the parser when rows wait in the change log (fanout.capture.change_log.ring_if_waiting:
a lost ring, a writer that outlived its drainer), so that no change waits longer than
one period, and publishes the log's depth and oldest age.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fanout.capture.change_log import sweep
from fanout.config import SweeperSettings
from fanout.observability import instrumented_handler
from fanout.source.connection import ConnectionHolder


class _Dependencies:
    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        self.settings = SweeperSettings.from_env()
        self.database = ConnectionHolder.from_env()
        # Fail fast on an unreachable endpoint: the rows stay in the log, and the next run is a minute away.
        config = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2})
        self.lambda_client = boto3.client("lambda", config=config)


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
        result = sweep(deps.database.get(), deps.lambda_client, deps.settings.parser_function_name)
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
        deps.database.close()  # the next run opens a fresh connection
        raise
    return result.as_dict()
