"""The generated capture triggers against MySQL 8.0: the change log's payloads, the ring and the kill switch.

Each test gets a fresh schema with the demo tables, migrated with db/migrations exactly as
the post-deploy hook does, its triggers ringing a parser ARN of its own. ``lambda_async`` is
the local stand-in for Aurora's native function (a loadable function handing each call to the
bridge, which remembers it and can be told to fail the calls to one ARN, as Aurora's fail when
Lambda cannot be reached).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture.cascades import cascade_triggers
from fanout.capture.composition_triggers import feeding_triggers
from fanout.capture.migrations import MigrationRunner
from fanout.capture.names import CHANGE_LOG_TABLE
from fanout.capture.trigger_sql import trigger_name
from fanout.capture.triggers import write_capture_migration
from fanout.config import DatabaseSettings
from fanout.model.mapping import Mappings, default_mappings, parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.source.connection import connect
from tests.support.files import ROOT
from tests.support.foreign_keys import DEMO_KEYS
from tests.support.integration import execute, lambda_async_bridge, lambda_async_calls, next_second, parser_arn, rows

PAYLOAD_FIELDS = {"v", "action", "table", "pk", "ts"}
LAMBDA_DOWN = "Network Connection. Unable to connect to endpoint (test)"


def migrate(settings: DatabaseSettings, directory: Path) -> list[int]:
    """Apply ``directory`` as the hook does, the triggers ringing the schema's own parser ARN (only remembered)."""
    arn = parser_arn(settings.name)
    lambda_async_bridge().configure(arn, deliver=False)
    runner = MigrationRunner(lambda: connect(settings), directory, {"parser_function_arn": arn}, applied_by="test")
    return runner.migrate().applied


@pytest.fixture
def rings(db_settings: DatabaseSettings) -> Iterator[str]:
    """The parser ARN the schema's triggers ring; the bridge forgets its calls and settings afterwards."""
    arn = parser_arn(db_settings.name)
    yield arn
    lambda_async_bridge().reset(arn)


@pytest.fixture
def source(db_settings: DatabaseSettings, rings: str) -> Iterator[DatabaseSettings]:
    """The demo schema migrated with the project's db/migrations."""
    migrate(db_settings, ROOT / "db" / "migrations")
    yield db_settings


@pytest.fixture
def session(source: DatabaseSettings) -> Iterator[pymysql.connections.Connection]:
    """An application session writing to the source tables."""
    conn = connect(source)
    yield conn
    conn.close()


def logged(conn: pymysql.connections.Connection) -> list[dict[str, Any]]:
    """The change log's payloads as ``conn`` sees them, oldest first."""
    return [json.loads(p) for (p,) in rows(conn, f"SELECT payload FROM {CHANGE_LOG_TABLE} ORDER BY id")]


def db_now(conn: pymysql.connections.Connection) -> float:
    return float(rows(conn, "SELECT UNIX_TIMESTAMP(SYSDATE(6))")[0][0])


def without_ts(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "ts"} for p in payloads]


def insert_post(conn: pymysql.connections.Connection, title: str = "a post") -> int:
    return execute(conn, "INSERT INTO posts (title, body, author) VALUES (%s, 'body', 'author')", title)


def triggers_on(conn: pymysql.connections.Connection, schema: str) -> dict[str, list[str]]:
    found = rows(
        conn,
        "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
        " ORDER BY EVENT_OBJECT_TABLE, TRIGGER_NAME",
        schema,
    )
    by_table: dict[str, list[str]] = {}
    for table, name in found:
        by_table.setdefault(str(table), []).append(str(name))
    return by_table


# --------------------------------------------------------------------------- the shipped migrations


def test_the_shipped_migrations_leave_one_trigger_per_captured_action(
    source: DatabaseSettings, session: pymysql.connections.Connection
) -> None:
    # Then the newest generation's triggers (one per captured action of every mapped table)
    # are the only ones left: each generated migration dropped the triggers of the ones before
    from fanout.capture.migration_scripts import load_migrations
    from fanout.model.mapping import default_mappings

    # (the newest migration that creates triggers: others, such as V005's checkpoint table, do not)
    latest = max(m.version for m in load_migrations(ROOT / "db" / "migrations") if "CREATE TRIGGER" in m.sql)
    assert triggers_on(session, source.name) == generated_trigger_names(default_mappings(), latest)


def generated_trigger_names(mappings: Mappings, version: int) -> dict[str, list[str]]:
    """Every trigger generation ``version`` creates, by table, each table's names sorted: one per captured
    action of a mapped table, one per action of a table feeding composed documents, and one per cascading
    action of a table the demo schema's foreign keys reference."""
    names: dict[str, list[str]] = {}
    for table in mappings.tables.values():
        names.setdefault(table.table, []).extend(trigger_name(table.table, a, version) for a in table.capture)
    for table, _action, name, _sql, _summary in feeding_triggers(mappings, version):
        names.setdefault(table, []).append(name)
    for table, _action, name, *_rest in cascade_triggers(mappings, DEMO_KEYS, version):
        names.setdefault(table, []).append(name)
    return {table: sorted(found) for table, found in names.items()}


def test_insert_update_rekey_and_delete_send_format_1_payloads_the_parser_accepts(
    session: pymysql.connections.Connection,
) -> None:
    # Given (early in a second of the clock: the schema rings at most once a second)
    next_second(session)
    before = db_now(session)

    # When the application changes a row, its key, and deletes it
    key = insert_post(session)
    execute(session, "UPDATE posts SET title = 'edited' WHERE id = %s", key)
    execute(session, "UPDATE posts SET id = %s WHERE id = %s", key + 1000, key)
    execute(session, "DELETE FROM posts WHERE id = %s", key + 1000)

    # Then each change logged exactly one payload, with exactly the fields of format 1, and the first statement
    # rang (the others came within its second: the ring throttle held them back)
    payloads = logged(session)
    assert without_ts(payloads) == [
        {"v": 1, "action": "insert", "table": "posts", "pk": {"id": key}},
        {"v": 1, "action": "update", "table": "posts", "pk": {"id": key}, "old_pk": {"id": key}},
        {"v": 1, "action": "update", "table": "posts", "pk": {"id": key + 1000}, "old_pk": {"id": key}},
        {"v": 1, "action": "delete", "table": "posts", "pk": {"id": key + 1000}},
    ]
    assert all(before <= p["ts"] <= db_now(session) for p in payloads)
    # And the parser takes every one of them (the re-key also names the old row)
    changes = [parse_trigger_payload(json.dumps(p), default_mappings()) for p in payloads]
    assert [len(c) for c in changes] == [1, 1, 2, 1]
    assert len(lambda_async_calls(session)) == 1


def test_a_failing_ring_leaves_the_write_intact_and_the_change_logged(
    session: pymysql.connections.Connection, rings: str
) -> None:
    # Given lambda_async fails, as Aurora's does when Lambda cannot be reached (ERROR 1873)
    lambda_async_bridge().configure(rings, fail=LAMBDA_DOWN)

    # When the application writes
    key = insert_post(session, "written while Lambda is down")
    execute(session, "UPDATE posts SET status = 'published' WHERE id = %s", key)
    other = insert_post(session, "to be deleted")
    execute(session, "DELETE FROM posts WHERE id = %s", other)

    # Then every statement succeeded (and each tried to ring: a failed ring holds back no later statement)
    assert rows(session, "SELECT title, status FROM posts WHERE id = %s", key) == [
        ("written while Lambda is down", "published")
    ]
    # And no ring reached Lambda (each statement's call failed), but every change waits in the change log
    # for the sweeper's ring
    assert lambda_async_calls(session) == []
    assert [call["outcome"] for call in lambda_async_bridge().calls(rings)] == [f"ERR {LAMBDA_DOWN}"] * 4
    assert without_ts(logged(session)) == [
        {"v": 1, "action": "insert", "table": "posts", "pk": {"id": key}},
        {"v": 1, "action": "update", "table": "posts", "pk": {"id": key}, "old_pk": {"id": key}},
        {"v": 1, "action": "insert", "table": "posts", "pk": {"id": other}},
        {"v": 1, "action": "delete", "table": "posts", "pk": {"id": other}},
    ]
    assert rows(session, "SELECT @fanout_ring_error")[0][0] == f"Lambda API returned error: {LAMBDA_DOWN}"


def test_a_logged_change_lives_and_dies_with_its_transaction(
    source: DatabaseSettings, session: pymysql.connections.Connection
) -> None:
    # Given another session watching the change log
    watcher = connect(source)
    try:
        # When a transaction writes and rolls back
        session.begin()
        insert_post(session, "rolled back")
        assert len(logged(session)) == 1  # the writer sees its own row
        assert logged(watcher) == []  # nobody else does before COMMIT
        session.rollback()

        # Then its logged change is gone: the change never happened
        assert logged(watcher) == []

        # When a transaction writes and commits
        session.begin()
        key = insert_post(session, "committed")
        session.commit()

        # Then its change is there for the drainer
        assert [payload["pk"] for payload in logged(watcher)] == [{"id": key}]
    finally:
        watcher.close()


def test_the_kill_switch_sends_and_parks_nothing_for_its_session_only(
    source: DatabaseSettings, session: pymysql.connections.Connection, rings: str
) -> None:
    # Given a bulk job's session with the kill switch on (and an invoke that would fail, too)
    execute(session, "SET @fanout_disable = 1")
    lambda_async_bridge().configure(rings, fail=LAMBDA_DOWN)

    # When it writes
    key = insert_post(session, "bulk")
    execute(session, "UPDATE posts SET title = 'bulk edited' WHERE id = %s", key)
    execute(session, "DELETE FROM posts WHERE id = %s", key)

    # Then nothing rang (lambda_async was not even called) and nothing was logged
    assert lambda_async_bridge().calls(rings) == []
    assert logged(session) == []

    # And another session at the same time is captured as usual (Lambda reachable again)
    lambda_async_bridge().configure(rings, deliver=False)
    other = connect(source)
    try:
        other_key = insert_post(other, "not bulk")
    finally:
        other.close()
    assert without_ts(logged(session)) == [{"v": 1, "action": "insert", "table": "posts", "pk": {"id": other_key}}]
    assert len(lambda_async_calls(session)) == 1

    # And switching it off again restores capture in the bulk session
    execute(session, "SET @fanout_disable = NULL")
    again = insert_post(session, "after the bulk job")
    assert logged(session)[-1]["pk"] == {"id": again}


# --------------------------------------------------------------------------- generated from other mappings


ORDERS_TABLE = """\
CREATE TABLE `order` (
    shop VARCHAR(20) NOT NULL,
    `key` INT NOT NULL,
    note VARCHAR(50) NOT NULL,
    PRIMARY KEY (shop, `key`)
) ENGINE = InnoDB;
"""


def test_a_generated_migration_for_a_reserved_word_composite_key_table_works(
    db_settings: DatabaseSettings, rings: str, tmp_path: Path
) -> None:
    # Given a table named `order` keyed by (shop, `key`), capturing updates and deletes only
    conn = connect(db_settings)
    try:
        execute(conn, ORDERS_TABLE)
        mappings = parse_mappings(
            {
                "tables": {
                    "order": {
                        "primary_key": [{"column": "shop", "type": "string"}, {"column": "key", "type": "int"}],
                        "capture": ["update", "delete"],
                    }
                }
            }
        )
        write_capture_migration(tmp_path, mappings)
        assert migrate(db_settings, tmp_path) == [1]

        # When rows are inserted, updated and deleted
        execute(conn, "INSERT INTO `order` VALUES ('zoë''s', 1, 'n')")
        execute(conn, "UPDATE `order` SET `key` = 2 WHERE shop = 'zoë''s'")
        execute(conn, "DELETE FROM `order` WHERE shop = 'zoë''s'")

        # Then only the captured actions were logged, the keys as objects
        payloads = logged(conn)
        assert without_ts(payloads) == [
            {
                "v": 1,
                "action": "update",
                "table": "order",
                "pk": {"shop": "zoë's", "key": 2},
                "old_pk": {"shop": "zoë's", "key": 1},
            },
            {"v": 1, "action": "delete", "table": "order", "pk": {"shop": "zoë's", "key": 2}},
        ]
        # And the parser takes the key columns in the mapping's order, whatever order the payload keeps them in
        # (MySQL's JSON type stores an object's keys shortest first: `key` before `shop`)
        assert [list(p["pk"]) for p in payloads] == [["key", "shop"]] * 2
        assert [[c.key for c in parse_trigger_payload(json.dumps(p), mappings)] for p in payloads] == [
            [(("shop", "zoë's"), ("key", 2)), (("shop", "zoë's"), ("key", 1))],
            [(("shop", "zoë's"), ("key", 2))],
        ]
    finally:
        conn.close()


def test_a_later_migration_replaces_the_triggers_and_drops_what_is_no_longer_captured(
    source: DatabaseSettings, session: pymysql.connections.Connection, tmp_path: Path
) -> None:
    # Given the shipped migrations applied, and a mapping that stops capturing inserts
    directory = tmp_path / "migrations"
    shutil.copytree(ROOT / "db" / "migrations", directory)
    posts = dict(json.loads((ROOT / "layers" / "common" / "fanout" / "tables.json").read_text())["tables"]["posts"])
    posts["capture"] = ["update", "delete"]
    path = write_capture_migration(directory, parse_mappings({"tables": {"posts": posts}}))

    # When the generated migration is applied
    version = int(path.name[1:4])
    assert migrate(source, directory) == [version]

    # Then the posts table has exactly the new triggers
    assert triggers_on(session, source.name) == {
        "posts": sorted(trigger_name("posts", action, version) for action in ("update", "delete"))
    }
    # And an insert logs nothing, while an update is logged once (not once per generation)
    key = insert_post(session)
    assert logged(session) == []
    execute(session, "UPDATE posts SET title = 'x' WHERE id = %s", key)
    assert without_ts(logged(session)) == [
        {"v": 1, "action": "update", "table": "posts", "pk": {"id": key}, "old_pk": {"id": key}}
    ]


def test_the_bundled_mapping_generates_a_migration_the_demo_schema_takes(
    source: DatabaseSettings, session: pymysql.connections.Connection, tmp_path: Path
) -> None:
    # Given the shipped migrations applied, and the next migration generated from the bundled mapping
    directory = tmp_path / "migrations"
    shutil.copytree(ROOT / "db" / "migrations", directory)
    mappings: Mappings = default_mappings()
    path = write_capture_migration(
        directory,
        mappings,
        cascades=lambda v: cascade_triggers(mappings, DEMO_KEYS, v),  # the demo's foreign keys
    )
    version = int(path.name[1:4])

    # When
    assert migrate(source, directory) == [version]

    # Then every mapped table has one trigger per captured action, of this version only
    assert triggers_on(session, source.name) == generated_trigger_names(mappings, version)
