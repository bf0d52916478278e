"""MigrationRunner against the project's MySQL 8.0: each test gets its own schema, dropped afterwards."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture.migration_scripts import MigrationError
from fanout.capture.migrations import HISTORY_TABLE, MigrationReport, MigrationRunner
from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from tests.support.integration import lambda_async_bridge, parser_arn
from tests.support.schemas import drop_database
from tests.support.waiting import wait_until

CREATE_TABLES = """\
-- The table the trigger watches, and one it never touches.
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
CREATE TABLE item_notes (id INT PRIMARY KEY, note TEXT);
"""

# A plain DDL step between the tables and the trigger. (lambda_async is the server's: a global loadable function
# locally, Aurora's native one in AWS; no migration defines it.)
NAME_INDEX = """\
/* Lookups by name; a ; inside a comment is not the end of the statement. */
CREATE INDEX items_name ON items (name);
"""

CAPTURE_TRIGGER = """\
DROP TRIGGER IF EXISTS fanout_items_after_update;

CREATE TRIGGER fanout_items_after_update AFTER UPDATE ON items FOR EACH ROW
BEGIN
    -- Only a changed name is worth sending; this comment has a ; in it.
    IF NOT (OLD.name <=> NEW.name) THEN
        SET @fanout_kind = CASE WHEN NEW.id > 0 THEN 'positive; id' ELSE 'other' END;
        SELECT lambda_async(
            '${parser_function_arn}',
            JSON_OBJECT('v', 1, 'action', 'update', 'table', 'items', 'pk', JSON_OBJECT('id', NEW.id))
        ) INTO @fanout_invoke_result;
    END IF;
END;
"""


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def database(mysql: dict[str, Any]) -> Iterator[DatabaseSettings]:
    """A fresh, uniquely named, empty schema on the project's MySQL."""
    name = f"fanout_t_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(**mysql, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield DatabaseSettings(
            host=mysql["host"], port=mysql["port"], name=name, user=mysql["user"], password=mysql["password"]
        )
    finally:
        drop_database(admin, name)
        admin.close()


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    return directory


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


def write_standard_set(directory: Path) -> None:
    write(directory, "V001__create_tables.sql", CREATE_TABLES)
    write(directory, "V002__items_name_index.sql", NAME_INDEX)
    write(directory, "V003__items_capture_trigger.sql", CAPTURE_TRIGGER)


def runner_for(settings: DatabaseSettings, directory: Path, lock_timeout: int = 60) -> MigrationRunner:
    return MigrationRunner(
        lambda: connect(settings),
        directory,
        {"parser_function_arn": parser_arn(settings.name)},  # one per schema: a test sees its own rings only
        applied_by="pytest",
        lock_timeout=lock_timeout,
    )


def query(settings: DatabaseSettings, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def history(settings: DatabaseSettings) -> list[tuple[Any, ...]]:
    return query(
        settings,
        f"SELECT version, description, success, error, applied_by, duration_ms, applied_at FROM {HISTORY_TABLE}"
        " ORDER BY version",
    )


def tables(settings: DatabaseSettings) -> set[str]:
    rows = query(settings, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (settings.name,))
    return {str(r[0]) for r in rows}


def trigger_bodies(settings: DatabaseSettings) -> dict[str, str]:
    rows = query(
        settings,
        "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
        (settings.name,),
    )
    return {str(r[0]): str(r[1]) for r in rows}


# --------------------------------------------------------------------------- tests


def test_a_fresh_database_reaches_the_latest_version(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given three migrations, the last a trigger with a BEGIN ... END body
    write_standard_set(migrations_dir)

    # When
    report = runner_for(database, migrations_dir).migrate()

    # Then all three ran, in order, and the history says so
    assert report.applied == [1, 2, 3]
    assert report.skipped == []
    assert report.current_version == 3
    rows = history(database)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (1, "create tables", 1, None, "pytest"),
        (2, "items name index", 1, None, "pytest"),
        (3, "items capture trigger", 1, None, "pytest"),
    ]
    assert all(r[5] >= 0 and r[6] is not None for r in rows)
    assert tables(database) == {"items", "item_notes", HISTORY_TABLE}
    assert list(trigger_bodies(database)) == ["fanout_items_after_update"]
    assert [s.state for s in runner_for(database, migrations_dir).status()] == ["applied"] * 3


def test_a_second_run_applies_nothing(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given a database already migrated
    write_standard_set(migrations_dir)
    runner_for(database, migrations_dir).migrate()
    before = history(database)

    # When
    report = runner_for(database, migrations_dir).migrate()

    # Then
    assert report.applied == []
    assert report.skipped == [1, 2, 3]
    assert report.current_version == 3
    assert history(database) == before


def test_an_edited_applied_migration_is_refused_and_nothing_else_is_applied(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given V1 applied, then edited, and a new V2 waiting
    v1 = write(migrations_dir, "V001__create_tables.sql", CREATE_TABLES)
    [applied] = runner_for(database, migrations_dir).status()
    runner_for(database, migrations_dir).migrate()
    v1.write_text(CREATE_TABLES + "CREATE TABLE sneaky (id INT);\n", encoding="utf-8")
    write(migrations_dir, "V002__more.sql", "CREATE TABLE more_items (id INT);")
    [edited, _] = runner_for(database, migrations_dir).status()

    # When / Then the error names the version and both checksums
    with pytest.raises(MigrationError) as caught:
        runner_for(database, migrations_dir).migrate()
    message = str(caught.value)
    assert "V1 (V001__create_tables.sql)" in message
    assert f"recorded checksum {applied.checksum}" in message
    assert f"file checksum {edited.checksum}" in message

    # And neither the edit nor V2 reached the database
    assert "sneaky" not in tables(database)
    assert "more_items" not in tables(database)
    assert [r[0] for r in history(database)] == [1]


def test_two_runners_at_once_apply_each_migration_exactly_once(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given migrations that log each application, one slow enough to overlap the runs
    write(migrations_dir, "V001__log_table.sql", "CREATE TABLE applications (version INT NOT NULL);")
    write(migrations_dir, "V002__slow.sql", "DO SLEEP(0.5);\nINSERT INTO applications VALUES (2);")
    write(migrations_dir, "V003__after.sql", "INSERT INTO applications VALUES (3);")
    start = threading.Barrier(2)
    reports: list[MigrationReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        runner = runner_for(database, migrations_dir)
        start.wait()
        try:
            reports.append(runner.migrate())
        except BaseException as exc:
            errors.append(exc)

    # When two runners start together
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # Then one applied everything, the other found nothing left to do
    assert errors == []
    assert sorted(len(r.applied) for r in reports) == [0, 3]
    assert sorted(v for r in reports for v in r.applied) == [1, 2, 3]
    assert sorted(r[0] for r in query(database, "SELECT version FROM applications")) == [2, 3]
    assert [r[0] for r in history(database)] == [1, 2, 3]


def test_a_failing_migration_is_recorded_and_blocks_the_next_run(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given V2 whose second statement fails
    write(migrations_dir, "V001__create_tables.sql", CREATE_TABLES)
    write(
        migrations_dir,
        "V002__broken.sql",
        "CREATE TABLE IF NOT EXISTS extra (id INT);\nINSERT INTO no_such_table VALUES (1);",
    )
    write(migrations_dir, "V003__after.sql", "CREATE TABLE after_broken (id INT);")

    # When
    with pytest.raises(MigrationError, match=r"migration V2 \(V002__broken.sql\) failed: statement 2 of 2"):
        runner_for(database, migrations_dir).migrate()

    # Then the history tells the truth: V1 applied, V2 failed with the server's error, V3 never ran
    rows = history(database)
    assert [(r[0], r[2]) for r in rows] == [(1, 1), (2, 0)]
    error = rows[1][3]
    assert "statement 2 of 2 failed: MySQL error 1146" in error
    assert "no_such_table" in error
    assert "extra" in tables(database)  # DDL commits: the first statement stays applied
    assert "after_broken" not in tables(database)

    # And the next run refuses, naming the version, its error and the way out
    with pytest.raises(MigrationError) as caught:
        runner_for(database, migrations_dir).migrate()
    assert "migration V2 (broken) failed on an earlier run" in str(caught.value)
    assert "MySQL error 1146" in str(caught.value)
    assert "fanout migrate --repair" in str(caught.value)
    states = {s.version: s.state for s in runner_for(database, migrations_dir).status()}
    assert states == {1: "applied", 2: "failed", 3: "pending"}


def test_repair_lets_a_fixed_migration_run_again(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given a failed V2
    write(migrations_dir, "V001__create_tables.sql", CREATE_TABLES)
    broken = write(
        migrations_dir,
        "V002__extra.sql",
        "CREATE TABLE IF NOT EXISTS extra (id INT);\nINSERT INTO no_such_table VALUES (1);",
    )
    runner = runner_for(database, migrations_dir)
    with pytest.raises(MigrationError):
        runner.migrate()

    # When the file is fixed (re-runnable, since its first statement already ran) and repaired
    broken.write_text("CREATE TABLE IF NOT EXISTS extra (id INT);\nINSERT INTO extra VALUES (1);", encoding="utf-8")
    cleared = runner.repair()
    report = runner.migrate()

    # Then V2 ran again and succeeded
    assert cleared == [2]
    assert report.applied == [2]
    assert [(r[0], r[2]) for r in history(database)] == [(1, 1), (2, 1)]
    assert query(database, "SELECT id FROM extra") == [(1,)]
    assert runner.repair() == []


def test_status_shows_applied_pending_modified_and_missing(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given V1..V3 applied; then V1 edited, V3's file deleted and V4 added
    v1 = write(migrations_dir, "V001__one.sql", "CREATE TABLE one (id INT);")
    write(migrations_dir, "V002__two.sql", "CREATE TABLE two (id INT);")
    v3 = write(migrations_dir, "V003__three.sql", "CREATE TABLE three (id INT);")
    runner = runner_for(database, migrations_dir)
    assert [s.state for s in runner.status()] == ["pending"] * 3  # no history table yet
    runner.migrate()
    v1.write_text("CREATE TABLE one (id BIGINT);", encoding="utf-8")
    v3.unlink()
    write(migrations_dir, "V004__four.sql", "CREATE TABLE four (id INT);")

    # When
    status = runner.status()

    # Then
    assert [(s.version, s.description, s.state) for s in status] == [
        (1, "one", "modified"),
        (2, "two", "applied"),
        (3, "three", "missing"),
        (4, "four", "pending"),
    ]
    assert status[0].checksum != status[0].recorded_checksum
    assert status[1].checksum == status[1].recorded_checksum
    assert status[1].applied_at is not None
    assert status[3].applied_at is None
    assert status[3].recorded_checksum is None


def test_a_dry_run_applies_nothing_and_returns_the_rendered_sql(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given a fresh database and the standard set
    write_standard_set(migrations_dir)

    # When
    report = runner_for(database, migrations_dir).migrate(dry_run=True)

    # Then the statements are there, rendered and split, and the database is untouched
    assert report.dry_run
    assert report.applied == []
    assert report.pending == [1, 2, 3]
    assert [len(report.statements[v]) for v in (1, 2, 3)] == [2, 1, 2]
    assert report.statements[3][0] == "DROP TRIGGER IF EXISTS fanout_items_after_update"
    assert f"'{parser_arn(database.name)}'" in report.statements[3][1]
    assert report.statements[3][1].rstrip().endswith("END")
    assert tables(database) == set()


def test_the_placeholder_ends_up_in_the_trigger_body(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given the trigger migration applied with the parser's ARN, whose calls the lambda_async bridge only remembers
    arn = parser_arn(database.name)
    lambda_async_bridge().configure(arn, deliver=False)
    write_standard_set(migrations_dir)
    runner_for(database, migrations_dir).migrate()

    # When a watched row changes
    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO items VALUES (7, 'old')")
            cur.execute("UPDATE items SET name = 'new' WHERE id = 7")
            cur.execute("UPDATE items SET name = 'new' WHERE id = 7")  # unchanged: the IF skips it
    finally:
        conn.close()

    # Then the trigger body holds the ARN and called lambda_async with it, once
    body = trigger_bodies(database)["fanout_items_after_update"]
    assert f"'{arn}'" in body
    assert "${" not in body
    [call] = lambda_async_bridge().calls(arn)
    assert call["outcome"] == "OK 202"
    assert json.loads(call["payload"]) == {"v": 1, "action": "update", "table": "items", "pk": {"id": 7}}


def test_a_lock_held_elsewhere_stops_the_run_with_a_clear_error(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given another session holding this schema's migration lock
    write_standard_set(migrations_dir)
    holder = connect(database)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (MigrationRunner.lock_name(database.name),))
            assert cur.fetchone() == (1,)

        # When / Then
        with pytest.raises(MigrationError, match=r"could not take the migration lock .* within 0 s"):
            runner_for(database, migrations_dir, lock_timeout=0).migrate()
        assert tables(database) == set()
    finally:
        holder.close()

    # And once the holder is gone the lock is free again (the server frees it when it has processed the
    # disconnect, a moment after the client closed: waited for, not assumed)
    wait_until("the closed holder's lock to be freed", lambda: lock_is_free(database), timeout=10)
    assert runner_for(database, migrations_dir, lock_timeout=0).migrate().applied == [1, 2, 3]


def lock_is_free(database: DatabaseSettings) -> bool:
    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT IS_FREE_LOCK(%s)", (MigrationRunner.lock_name(database.name),))
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


def test_the_lock_is_released_after_a_failed_run(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given a run that fails
    write(migrations_dir, "V001__broken.sql", "INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(MigrationError):
        runner_for(database, migrations_dir).migrate()

    # When / Then the lock can be taken at once
    assert query(database, "SELECT IS_FREE_LOCK(%s)", (MigrationRunner.lock_name(database.name),)) == [(1,)]


def test_a_missing_placeholder_stops_the_run_before_anything_is_applied(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given V1 fine and V2 needing a placeholder nobody provides
    write(migrations_dir, "V001__create_tables.sql", CREATE_TABLES)
    write(migrations_dir, "V002__needs_schema.sql", "CREATE TABLE ${archive_schema}.t (id INT);")

    # When / Then
    with pytest.raises(MigrationError, match=r"V002__needs_schema.sql: placeholder \$\{archive_schema\}"):
        runner_for(database, migrations_dir).migrate()
    assert "items" not in tables(database)


def test_a_pending_migration_older_than_the_newest_applied_is_refused(
    database: DatabaseSettings, migrations_dir: Path
) -> None:
    # Given V2 applied, then a V1 that arrived late
    write(migrations_dir, "V002__two.sql", "CREATE TABLE two (id INT);")
    runner_for(database, migrations_dir).migrate()
    write(migrations_dir, "V001__late.sql", "CREATE TABLE late (id INT);")

    # When / Then
    with pytest.raises(MigrationError, match=r"V001__late.sql are older than the newest applied migration V2"):
        runner_for(database, migrations_dir).migrate()
    assert "late" not in tables(database)


def test_uninstall_drops_fanout_triggers_and_the_history_only(database: DatabaseSettings, migrations_dir: Path) -> None:
    # Given the standard set applied and a trigger that is not fanout's
    write_standard_set(migrations_dir)
    runner = runner_for(database, migrations_dir)
    runner.migrate()
    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TRIGGER app_items_audit BEFORE INSERT ON items FOR EACH ROW SET @audit = 1")
    finally:
        conn.close()

    # When
    dropped = runner.uninstall()

    # Then
    assert dropped == ["fanout_items_after_update"]
    assert list(trigger_bodies(database)) == ["app_items_audit"]
    assert HISTORY_TABLE not in tables(database)
    assert "items" in tables(database)
