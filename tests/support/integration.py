"""Helpers shared by the integration tests that drive the whole fetch path (reader + sinks).

Plain functions, so each test module decides its fixtures' scope.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping
from fanout.pipeline.fetcher import Fetcher, FetchReport
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from local.lambda_async.bridge import Control
from tests.support.aws import aws_resource
from tests.support.files import template_resource
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def parser_arn(database: str) -> str:
    """The parser ARN a test schema's triggers ring: one per schema, so each test sees its own rings only."""
    return f"arn:aws:lambda:us-east-1:123456789012:function:fanout-test-parser-{database}"


def lambda_async_bridge() -> Control:
    """The local lambda_async bridge (started with MySQL): per-ARN failure, delay, and the calls it received."""
    from local.config import LocalConfig

    return Control(LocalConfig.from_env().lambda_async_port)


def create_replica_table(local_aws: dict[str, str], name: str | None = None) -> Any:
    """A DynamoDB table on ministack with exactly the key schema and TTL template.yaml declares."""
    spec = template_resource("ReplicaTable")
    dynamodb = aws_resource(local_aws, "dynamodb")
    table = dynamodb.create_table(
        TableName=name or f"fanout-test-{uuid.uuid4().hex[:8]}",
        BillingMode=spec["BillingMode"],
        AttributeDefinitions=spec["AttributeDefinitions"],
        KeySchema=spec["KeySchema"],
    )
    table.wait_until_exists()
    ttl = spec["TimeToLiveSpecification"]
    dynamodb.meta.client.update_time_to_live(
        TableName=table.name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
    )
    return table


def install_capture_triggers(settings: DatabaseSettings) -> None:
    """The project's migrations, applied as the hook applies them, ringing this schema's own parser ARN.

    The bridge only remembers those rings (no Lambda behind them): :func:`lambda_async_calls` reads them.
    """
    from fanout.capture.migrations import MigrationRunner

    arn = parser_arn(settings.name)
    lambda_async_bridge().configure(arn, deliver=False)
    runner = MigrationRunner(
        lambda: connect(settings), ROOT / "db" / "migrations", {"parser_function_arn": arn}, applied_by="test"
    )
    runner.migrate()


@dataclass
class Recorded:
    """A ``reject`` callable that keeps what it was asked to record."""

    records: list[tuple[str, Any, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, reason: str, payload: Any, correlation_id: str) -> None:
        with self._lock:
            self.records.append((reason, payload, correlation_id))


def fetch(
    settings: DatabaseSettings,
    mapping: TableMapping,
    change: Change,
    sinks: list[Any],
    reject: Callable[[str, Any, str], None] | None = None,
) -> FetchReport:
    """One fetcher invocation for one change: its own connection, the real reader, the given sinks."""
    conn = connect(settings)
    try:
        fetcher = Fetcher(Mappings({mapping.table: mapping}), DatabaseSource.over(conn), sinks, reject=reject)
        return fetcher.apply([change])
    finally:
        conn.close()


class FetchInThread:
    """Runs :func:`fetch` on a thread, so the test can hold a writer's transaction open meanwhile."""

    def __init__(self, *args: Any) -> None:
        self.report: FetchReport | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)
        self._thread.start()

    def _run(self, *args: Any) -> None:
        try:
            self.report = fetch(*args)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def is_waiting(self) -> bool:
        return self._thread.is_alive()

    def result(self, timeout: float = 20.0) -> FetchReport:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the fetch did not finish"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def rows(conn: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """All rows of one query on an open connection."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def execute(conn: Any, sql: str, *args: Any) -> int:
    """One statement on an open connection; its LAST_INSERT_ID (0 if none)."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return int(cur.lastrowid or 0)


def lambda_async_calls(conn: Any) -> list[dict[str, Any]]:
    """What the triggers of ``conn``'s schema handed to lambda_async (the rings), oldest first, failed ones
    excluded (a failed call reached no Lambda)."""
    ((database,),) = rows(conn, "SELECT DATABASE()")
    calls = lambda_async_bridge().calls(parser_arn(database))
    return [json.loads(call["payload"]) for call in calls if call["outcome"].startswith("OK")]


def database_clock(conn: Any) -> float:
    """The database's real time (``UNIX_TIMESTAMP(SYSDATE(6))``, the clock the triggers' ring token reads)."""
    ((now,),) = rows(conn, "SELECT UNIX_TIMESTAMP(SYSDATE(6))")
    return float(now)


def next_second(conn: Any) -> float:
    """Wait until the database clock has entered a new second, and return the time then (a few ms into it).

    The triggers of a schema ring at most once a second of the clock (its ring token), so a captured statement
    right after this may ring whatever rang before, and the statements that follow quickly share its second."""
    start = math.floor(database_clock(conn))
    return wait_until("the next second", lambda: (now := database_clock(conn)) >= start + 1 and now, 5, 0.005)


def lock_waits(conn: Any, schema: str) -> int:
    """How many InnoDB lock requests on ``schema``'s tables wait right now (MySQL 8's
    performance_schema.data_lock_waits: read live, no cache to go stale)."""
    ((count,),) = rows(
        conn,
        "SELECT COUNT(*) FROM performance_schema.data_lock_waits w"
        " JOIN performance_schema.data_locks l"
        " ON l.ENGINE = w.ENGINE AND l.ENGINE_LOCK_ID = w.REQUESTING_ENGINE_LOCK_ID"
        " WHERE l.OBJECT_SCHEMA = %s",
        schema,
    )
    return int(count)
