"""The local source database: connections, SQL files, the demo schema, throwaway schemas for the benchmarks."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pymysql

from fanout.capture.migration_scripts import split_statements
from fanout.capture.migrations import MigrationRunner
from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from local.config import ROOT, LocalConfig, StackEnv

DEMO_SCHEMA = ROOT / "local" / "demo_schema.sql"
MIGRATIONS = ROOT / "db" / "migrations"


def admin_connection(cfg: LocalConfig, database: str | None = None) -> Any:
    """The administrator's session (root on the local server), autocommit."""
    return pymysql.connect(
        host=cfg.db_host,
        port=cfg.db_port,
        user=cfg.db_user,
        password=cfg.db_password,
        database=database,
        charset="utf8mb4",
        autocommit=True,
    )


def source_connection(env: StackEnv, *, autocommit: bool = True) -> Any:
    """A plain application-side connection to the deployed stack's database, in UTC."""
    conn = pymysql.connect(
        host=env.db_host,
        port=env.db_port,
        user=env.db_user,
        password=env.db_password,
        database=env.db_name,
        charset="utf8mb4",
        autocommit=autocommit,
    )
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return conn


def run_sql_file(conn: Any, path: Path) -> None:
    with conn.cursor() as cur:
        for statement in split_statements(path.read_text(encoding="utf-8")):
            cur.execute(statement)


def prepare_database(cfg: LocalConfig) -> None:
    """The demo schema in cfg.db_name (lambda_async is global: ensure_mysql installs it)."""
    conn = admin_connection(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{cfg.db_name}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{cfg.db_name}`")
        run_sql_file(conn, DEMO_SCHEMA)
    finally:
        conn.close()


def migrations_missing_after_deploy(cfg: LocalConfig, env: StackEnv) -> list[int]:
    """Apply what the deployed hook's history lacks in the demo schema, as the hook would; the versions applied.

    The hook runs when CloudFormation sees db/ change. ministack keeps the stack across restarts, so a database
    that lost its migrations meanwhile (its data directory wiped, a schema dropped) would otherwise stay without
    capture triggers after `make up`, and every change would silently go nowhere. Normally this applies nothing.
    """
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, cfg.db_name, cfg.db_user, cfg.db_password)
    runner = MigrationRunner(
        lambda: connect(settings),
        MIGRATIONS,
        {"parser_function_arn": env.parser_function_arn},
        applied_by="local:make up",
    )
    return runner.migrate().applied


def create_database(cfg: LocalConfig, prefix: str = "fanout_bench") -> str:
    """A new, empty, uniquely named schema on the local MySQL; the caller drops it."""
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    conn = admin_connection(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return name


def drop_database(cfg: LocalConfig, name: str) -> None:
    conn = admin_connection(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def demo_rows(cfg: LocalConfig) -> int:
    """Rows in the demo's source tables (MySQL keeps them across `make down`)."""
    conn = admin_connection(cfg, cfg.db_name)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COALESCE(SUM(table_rows), 0) FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name IN ('posts', 'tenant_settings')",
                (cfg.db_name,),
            )
            (count,) = cur.fetchone()
            return int(count)
    finally:
        conn.close()
