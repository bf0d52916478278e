"""The locking re-read against a real MySQL 8.0 (docs/architecture.md, "Versions and sinks").

The trigger fires before COMMIT, so the fetcher can run while the writer's
transaction is still open. These tests hold such a transaction open in one
connection and read in another, and show the read waits for the outcome.

The reading session runs at READ UNCOMMITTED: a plain read there returns the writer's uncommitted
change (a dirty read) at once, so only the read's shared lock (``FOR SHARE``: it waits for the writer,
then returns the committed row at any isolation level) keeps an update, insert or delete that is rolled
back out of what the fetcher sees. At the default REPEATABLE READ a plain read would return the last
committed row just the same, and these tests could not tell a locking read from one that is not.
That the read waits is asked of the server (performance_schema), never timed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.source.reader import read_row
from fanout.source.rows import RowState, SourceReadError
from tests.support.locks import seen_waiting

POSTS = default_mappings().get("posts")

Sessions = Callable[..., pymysql.connections.Connection]


def change(key: int) -> Change:
    return Change("posts", (("id", key),), "update", 1)


def insert_post(conn: Any, title: str) -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'a')", (title,))
        return int(cur.lastrowid)


def dirty_reader(sessions: Sessions) -> pymysql.connections.Connection:
    """A fetcher's session whose plain reads would see other transactions' uncommitted changes."""
    conn = sessions()
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
    return conn


@dataclass
class Read:
    thread: threading.Thread
    state: RowState | None = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)


@contextmanager
def reading(reader: pymysql.connections.Connection, key: int, writer: Any) -> Iterator[Read]:
    """read_row of ``key`` on ``reader``, in a thread, while the block runs; on leaving, ``writer``'s
    transaction is rolled back (nothing left to undo after its COMMIT or ROLLBACK; after a failure it lets
    the read go) and the read is awaited, so no test leaves a thread or a transaction behind."""

    def run() -> None:
        try:
            read.state = read_row(reader, POSTS, change(key))
        except Exception as exc:  # handed to the test thread  # noqa: BLE001
            read.error = exc
        finally:
            read.done.set()

    read = Read(threading.Thread(target=run, daemon=True))
    read.thread.start()
    try:
        yield read
    finally:
        writer.rollback()
        read.thread.join(timeout=60)


def waits_for_the_writer(watcher: Any, reader: Any, read: Read) -> None:
    waits = seen_waiting(watcher, reader.thread_id(), alive=read.thread.is_alive)
    assert {table for table, _ in waits} == {"posts"}, waits
    assert not read.done.is_set()


@pytest.fixture
def writer(sessions: Sessions) -> pymysql.connections.Connection:
    return sessions(autocommit=False)


def test_given_a_committed_row_when_read_then_row_and_a_db_clock_version(sessions: Sessions) -> None:
    conn = sessions()
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


def test_given_no_row_when_read_then_absent_with_a_version(sessions: Sessions) -> None:
    state = read_row(sessions(), POSTS, change(999_999))
    assert state == RowState(None, state.version) and state.version > 0


def test_given_an_open_update_when_it_commits_then_the_read_waited_and_sees_the_new_value(
    sessions: Sessions, writer: Any
) -> None:
    key = insert_post(sessions(), "old")
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'new' WHERE id = %s", (key,))
    reader, watcher = dirty_reader(sessions), sessions()
    with reading(reader, key, writer) as read:
        waits_for_the_writer(watcher, reader, read)  # the locking read waits for the open writer
        writer.commit()
    assert read.error is None and read.state is not None and read.state.row is not None
    assert read.state.row["title"] == "new"


def test_given_an_open_update_when_it_rolls_back_then_the_read_sees_the_original(
    sessions: Sessions, writer: Any
) -> None:
    key = insert_post(sessions(), "original")
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'never committed' WHERE id = %s", (key,))
    reader, watcher = dirty_reader(sessions), sessions()
    with reading(reader, key, writer) as read:
        waits_for_the_writer(watcher, reader, read)
        writer.rollback()
    assert read.error is None and read.state is not None and read.state.row is not None
    assert read.state.row["title"] == "original"  # a plain read here would have returned 'never committed'


def test_given_an_open_insert_when_it_rolls_back_then_the_read_finds_no_row(sessions: Sessions, writer: Any) -> None:
    with writer.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('ghost', 'b', 'a')")
        key = int(cur.lastrowid)
    reader, watcher = dirty_reader(sessions), sessions()
    with reading(reader, key, writer) as read:
        waits_for_the_writer(watcher, reader, read)  # an uncommitted insert is not read as absent yet
        writer.rollback()
    assert read.error is None and read.state is not None
    assert read.state.row is None  # a plain read here would have returned the ghost


def test_given_an_open_delete_when_it_rolls_back_then_the_read_still_finds_the_row(
    sessions: Sessions, writer: Any
) -> None:
    key = insert_post(sessions(), "survivor")
    with writer.cursor() as cur:
        cur.execute("DELETE FROM posts WHERE id = %s", (key,))
    reader, watcher = dirty_reader(sessions), sessions()
    with reading(reader, key, writer) as read:
        waits_for_the_writer(watcher, reader, read)
        writer.rollback()
    assert read.error is None and read.state is not None and read.state.row is not None
    assert read.state.row["title"] == "survivor"  # a plain read here would have found no row


def test_given_a_writer_that_holds_its_lock_too_long_then_a_retryable_error(sessions: Sessions, writer: Any) -> None:
    key = insert_post(sessions(), "held")
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'held longer' WHERE id = %s", (key,))
    impatient = sessions(lock_wait_timeout=1)
    with pytest.raises(SourceReadError, match="lock wait timeout"):
        read_row(impatient, POSTS, change(key))
    writer.rollback()
    # the connection is usable afterwards (the failed transaction was ended)
    state = read_row(impatient, POSTS, change(key))
    assert state.row is not None and state.row["title"] == "held"


def test_key_values_are_bound_parameters_never_sql(sessions: Sessions) -> None:
    conn = sessions()
    insert_post(conn, "keep me")
    hostile = Change("posts", (("id", "1 OR 1=1"),), "update", 1)  # type: ignore[arg-type]
    # bound as a value, "1 OR 1=1" is compared as a number (1) or fails; it can never widen the WHERE
    state = read_row(conn, POSTS, hostile)
    assert state.row is None or state.row["id"] == 1
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM posts")
        assert cur.fetchone()[0] == 1


def test_connection_settings_are_utc_and_bounded(sessions: Sessions, db_settings: Any) -> None:
    conn = sessions()
    with conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone, @@session.innodb_lock_wait_timeout")
        assert cur.fetchone() == ("+00:00", db_settings.lock_wait_timeout)
    assert isinstance(conn, pymysql.connections.Connection)
