"""What every benchmark sets up, in one place: the local services, throwaway schemas and replica tables of its
own, the deployed stack (for the benchmarks that go through it), and the results files.

The benchmarks run on the same local stack as the tests (local/services.py): MySQL 8.0 with the lambda_async
loadable function and its bridge, ministack, OpenSearch. Each makes its own schema and DynamoDB table and
drops them after; results go to bench/results/<name>.{json,md}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import boto3

from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from local.config import LocalConfig, StackEnv
from local.database import create_database
from local.lambda_async.bridge import Control
from local.services import ensure_ministack, ensure_mysql, ensure_opensearch
from local.stack import up

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTS_TABLE_SQL = (ROOT / "local" / "demo_schema.sql").read_text().split(";")[0]
# Aurora's published cost of one lambda_async call (the bridge spends it per call when asked to).
AURORA_LAMBDA_ASYNC_MS = 35


def local_services() -> LocalConfig:
    """MySQL 8.0 (with lambda_async and its bridge), ministack and OpenSearch running; their configuration."""
    cfg = LocalConfig.from_env()
    ensure_mysql(cfg)
    ensure_ministack(cfg)
    ensure_opensearch(cfg)
    return cfg


def deployed_stack() -> StackEnv:
    """The app deployed with the current code on the local stack (`make up`, idempotent)."""
    return up()


def lambda_async_bridge(cfg: LocalConfig | None = None) -> Control:
    """The bridge the lambda_async loadable function calls: per-ARN delay (Aurora's cost), failure, call counts."""
    return Control((cfg or LocalConfig.from_env()).lambda_async_port)


def create_replica_table(cfg: LocalConfig, name: str) -> tuple[Any, Any]:
    """A throwaway DynamoDB table on ministack with the ReplicaTable's key schema: ``(dynamodb resource, table)``;
    the caller deletes the table."""
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=cfg.aws_endpoint,
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    table = dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return dynamodb, table


def posts_database(cfg: LocalConfig, rows: int) -> tuple[str, Any]:
    """A throwaway schema with the demo's ``posts`` table holding ``rows`` rows: ``(its name, a connection)``;
    the caller drops it (local.database.drop_database)."""
    db_name = create_database(cfg)
    conn = connect(DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password))
    with conn.cursor() as cur:
        cur.execute(POSTS_TABLE_SQL)
    insert_rows(
        conn,
        "INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)",
        ((f"post {i}", "body " * 40, "bench") for i in range(rows)),
    )
    return db_name, conn


def insert_rows(conn: Any, statement: str, rows: Iterable[tuple[Any, ...]], chunk: int = 5000) -> None:
    """``rows`` inserted with ``statement`` (an INSERT ... VALUES), ``chunk`` rows a multi-row statement
    (PyMySQL batches executemany's rows; MySQL 8.0 has no sequence tables to SELECT them from)."""
    batch: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        for row in rows:
            batch.append(row)
            if len(batch) == chunk:
                cur.executemany(statement, batch)
                batch = []
        if batch:
            cur.executemany(statement, batch)


def write_results(name: str, result: dict[str, Any], markdown: str) -> None:
    """bench/results/<name>.json (the figures) and <name>.md (what the README and docs quote)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")


def log_lines(logs: Any, group: str, term: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The JSON log lines of ``group`` (a function's log group on the deployed stack) between the two instants
    whose message is ``term`` (found by a quoted-term filter)."""
    request: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "endTime": end_ms,
                               "filterPattern": f'"{term}"'}  # fmt: skip
    lines: list[dict[str, Any]] = []
    while True:
        answer = logs.filter_log_events(**request)
        for event in answer.get("events", []):
            text = str(event.get("message", "")).strip()
            if text.startswith("{"):
                fields = json.loads(text)
                if fields.get("message") == term:
                    lines.append(fields)
        if not answer.get("nextToken"):
            return lines
        request["nextToken"] = answer["nextToken"]
