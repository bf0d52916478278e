"""The locking re-read against a real MariaDB (docs/architecture.md, "Versions and sinks").

The trigger fires before COMMIT, so the fetcher can run while the writer's
transaction is still open. These tests hold such a transaction open in one
connection and read in another, and show the read waits for the outcome.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pymysql
import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.source.connection import connect
from fanout.source.reader import RowState, SourceReadError, read_row

POSTS = default_mappings().get("posts")
HOLD_SECONDS = 0.6


def change(key: int) -> Change:
    return Change("posts", (("id", key),), "update", 1)


def insert_post(conn: Any, title: str) -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'a')", (title,))
        return int(cur.lastrowid)


def read_in_thread(settings: Any, key: int) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        conn = connect(settings)
        started = time.monotonic()
        try:
            out["state"] = read_row(conn, POSTS, change(key))
        except Exception as exc:  # handed to the test thread
            out["error"] = exc
        out["waited"] = time.monotonic() - started
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.fixture
def writer(db_settings: Any) -> Any:
    conn = connect(db_settings, autocommit=False)
    yield conn
    conn.close()


def test_given_a_committed_row_when_read_then_row_and_a_db_clock_version(db_settings: Any) -> None:
    conn = connect(db_settings)
    key = insert_post(conn, "committed")
    with conn.cursor() as cur:
        cur.execute("SELECT CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS UNSIGNED)")
        before = int(cur.fetchone()[0])
    state = read_row(conn, POSTS, change(key))
    assert state.row is not None and state.row["title"] == "committed"
    assert set(state.row) == set(POSTS.columns or ())
    assert state.version >= before
    later = read_row(conn, POSTS, change(key))
    assert later.version > state.version  # each read is a later instant of the same clock


def test_given_no_row_when_read_then_absent_with_a_version(db_settings: Any) -> None:
    conn = connect(db_settings)
    state = read_row(conn, POSTS, change(999_999))
    assert state == RowState(None, state.version) and state.version > 0


def test_given_an_open_update_when_it_commits_then_the_read_waited_and_sees_the_new_value(
    db_settings: Any, writer: Any
) -> None:
    key = insert_post(connect(db_settings), "old")
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'new' WHERE id = %s", (key,))
    thread, out = read_in_thread(db_settings, key)
    time.sleep(HOLD_SECONDS)
    assert thread.is_alive(), "the locking read must wait for the open writer"
    writer.commit()
    thread.join(10)
    assert out["state"].row["title"] == "new"
    assert out["waited"] >= HOLD_SECONDS * 0.8


def test_given_an_open_update_when_it_rolls_back_then_the_read_sees_the_original(db_settings: Any, writer: Any) -> None:
    key = insert_post(connect(db_settings), "original")
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'never committed' WHERE id = %s", (key,))
    thread, out = read_in_thread(db_settings, key)
    time.sleep(HOLD_SECONDS)
    writer.rollback()
    thread.join(10)
    assert out["state"].row["title"] == "original"


def test_given_an_open_insert_when_it_rolls_back_then_the_read_finds_no_row(db_settings: Any, writer: Any) -> None:
    with writer.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('ghost', 'b', 'a')")
        key = int(cur.lastrowid)
    thread, out = read_in_thread(db_settings, key)
    time.sleep(HOLD_SECONDS)
    assert thread.is_alive(), "an uncommitted insert must not be read as absent yet"
    writer.rollback()
    thread.join(10)
    assert out["state"].row is None


def test_given_an_open_delete_when_it_rolls_back_then_the_read_still_finds_the_row(
    db_settings: Any, writer: Any
) -> None:
    key = insert_post(connect(db_settings), "survivor")
    with writer.cursor() as cur:
        cur.execute("DELETE FROM posts WHERE id = %s", (key,))
    thread, out = read_in_thread(db_settings, key)
    time.sleep(HOLD_SECONDS)
    writer.rollback()
    thread.join(10)
    assert out["state"].row["title"] == "survivor"


def test_given_a_writer_that_holds_its_lock_too_long_then_a_retryable_error(db_settings: Any, writer: Any) -> None:
    from dataclasses import replace

    key = insert_post(connect(db_settings), "held")
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'held longer' WHERE id = %s", (key,))
    impatient = connect(replace(db_settings, lock_wait_timeout=1))
    with pytest.raises(SourceReadError, match="lock wait timeout"):
        read_row(impatient, POSTS, change(key))
    writer.rollback()
    # the connection is usable afterwards (the failed transaction was ended)
    assert read_row(impatient, POSTS, change(key)).row["title"] == "held"


def test_key_values_are_bound_parameters_never_sql(db_settings: Any) -> None:
    conn = connect(db_settings)
    insert_post(conn, "keep me")
    hostile = Change("posts", (("id", "1 OR 1=1"),), "update", 1)  # type: ignore[arg-type]
    # bound as a value, "1 OR 1=1" is compared as a number (1) or fails; it can never widen the WHERE
    state = read_row(conn, POSTS, hostile)
    assert state.row is None or state.row["id"] == 1
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM posts")
        assert cur.fetchone()[0] == 1


def test_connection_settings_are_utc_and_bounded(db_settings: Any) -> None:
    conn = connect(db_settings)
    with conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone, @@session.innodb_lock_wait_timeout")
        assert cur.fetchone() == ("+00:00", db_settings.lock_wait_timeout)
    assert isinstance(conn, pymysql.connections.Connection)
