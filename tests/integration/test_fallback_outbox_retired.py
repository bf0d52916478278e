"""V009 retires the fallback outbox of the per-row triggers: no deploy goes on while a parked change waits there."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture.migration_scripts import MigrationError
from fanout.capture.migrations import MigrationRunner
from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from tests.support.files import ROOT

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fanout-outbox-test-parser"
OUTBOX = "fanout_fallback_outbox"  # the retired table's name, as V003 and V004 created it
RETIRING = "V009__retire_fallback_outbox.sql"


def runner(db_settings: DatabaseSettings, directory: Path) -> MigrationRunner:
    return MigrationRunner(lambda: connect(db_settings), directory, {"parser_function_arn": ARN}, "test")


def tables(conn: pymysql.connections.Connection) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        return {str(name) for (name,) in cur.fetchall()}


def execute(conn: pymysql.connections.Connection, sql: str, *args: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(sql, args)
    conn.commit()


def test_the_release_is_applied_only_once_no_parked_change_waits(db_settings: DatabaseSettings, tmp_path: Path) -> None:
    # Given a database migrated up to V008, with one change parked in the outbox by a per-row trigger
    for migration in sorted((ROOT / "db" / "migrations").glob("V*.sql")):
        if migration.name < RETIRING:  # the releases before it (V0NN names sort by version)
            shutil.copy(migration, tmp_path)
    runner(db_settings, tmp_path).migrate()
    conn = connect(db_settings)
    try:
        assert OUTBOX in tables(conn)
        execute(conn, f"INSERT INTO {OUTBOX} (function_arn, payload) VALUES (%s, %s)", ARN, '{"v": 1}')  # noqa: S608

        # When V009 is deployed, Then it fails (this release sweeps the outbox no more), keeping the change
        shutil.copy(ROOT / "db" / "migrations" / RETIRING, tmp_path)
        with pytest.raises(MigrationError, match="1242"):
            runner(db_settings, tmp_path).migrate()
        assert [s.state for s in runner(db_settings, tmp_path).status()][-1] == "failed"

        # And once the change is drained (the previous release's sweeper) and the failure repaired, it applies
        execute(conn, f"DELETE FROM {OUTBOX}")  # noqa: S608
        runner(db_settings, tmp_path).repair()
        runner(db_settings, tmp_path).migrate()
        assert [s.state for s in runner(db_settings, tmp_path).status()][-1] == "applied"
    finally:
        conn.close()


def test_a_new_database_applies_every_migration(db_settings: DatabaseSettings) -> None:
    runner(db_settings, ROOT / "db" / "migrations").migrate()
    assert {s.state for s in runner(db_settings, ROOT / "db" / "migrations").status()} == {"applied"}
