"""The batched locking re-read (read_rows) against a real MySQL 8.0 (docs/architecture.md, "Versions and sinks").

One SKIP LOCKED query reads every key it can without waiting; a key it did not
return is locked or absent. One NOWAIT query of those keys tells the two apart: when
no writer holds any of them, the ones it does not return are absent; when it meets a
lock, each is read alone with the waiting read: a locked row must come back as the
writer's committed outcome, never as a delete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.source import reader as source_reader
from fanout.source.reader import read_row, read_rows
from fanout.source.rows import CLOCK_SQL, RowState
from tests.support.locks import row_locks_held, seen_waiting

POSTS = default_mappings().get("posts")
SETTINGS = default_mappings().get("tenant_settings")

Sessions = Callable[..., pymysql.connections.Connection]


def post(key: int) -> Change:
    return Change("posts", (("id", key),), "update", 1)


def setting(tenant: str, name: str) -> Change:
    return Change("tenant_settings", (("tenant", tenant), ("setting_key", name)), "update", 1)


def insert_posts(conn: Any, titles: list[str]) -> list[int]:
    keys = []
    with conn.cursor() as cur:
        for title in titles:
            cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'a')", (title,))
            keys.append(int(cur.lastrowid))
    return keys


def test_given_present_and_absent_keys_when_read_together_then_rows_absences_and_one_locked_version(
    sessions: Sessions,
) -> None:
    # Given three committed rows and a key that does not exist
    conn = sessions()
    keys = insert_posts(conn, ["a", "b", "c"])
    # When all four are read in one batch
    states = read_rows(conn, POSTS, [post(k) for k in keys] + [post(999_999)])
    # Then each present key gets its row, the absent one is absent, and the versions are DB-clock instants
    assert [s.row["title"] if isinstance(s, RowState) and s.row else None for s in states] == ["a", "b", "c", None]
    assert all(isinstance(s, RowState) and s.version > 0 for s in states)
    assert len({s.version for s in states[:3] if isinstance(s, RowState)}) == 1  # one clock read under the locks
    later = read_row(conn, POSTS, post(keys[0]))
    assert isinstance(states[0], RowState) and later.version > states[0].version


def test_given_a_row_held_by_an_open_writer_when_read_in_a_batch_then_the_committed_outcome_not_a_delete(
    sessions: Sessions,
) -> None:
    # Given two rows, one updated in a transaction that stays open
    free, held = insert_posts(sessions(), ["free", "before"])
    writer, reader, watcher, other = sessions(autocommit=False), sessions(), sessions(), sessions(autocommit=False)
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'after' WHERE id = %s", (held,))
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(states=read_rows(reader, POSTS, [post(free), post(held)])))
    thread.start()
    try:
        # When the batch is seen waiting: FOR SHARE SKIP LOCKED left the held row out, and it is read alone
        waits = seen_waiting(watcher, reader.thread_id(), alive=thread.is_alive)
        assert {table for table, _ in waits} == {"posts"}, waits
        # ... holding no lock on the free row meanwhile: another writer updates it without waiting
        # (innodb_lock_wait_timeout 1: 1205 if the batch had waited while holding what it had read)
        assert row_locks_held(watcher, reader.thread_id()) == []
        with other.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute("UPDATE posts SET title = 'free, edited' WHERE id = %s", (free,))
        other.commit()
        writer.commit()
    finally:
        writer.rollback()  # nothing left to undo once committed; on a failure, it lets the reader go
        thread.join(timeout=60)
    # Then the free row was read by the batch, and the locked one is the committed update, not a delete
    states = out["states"]
    assert states[0].row["title"] == "free"
    assert states[1].row is not None and states[1].row["title"] == "after"


def test_given_a_case_only_spelling_when_read_in_a_batch_then_only_the_exact_key_is_present(sessions: Sessions) -> None:
    # Given a row stored as ('ACME', 'theme') under a case-insensitive collation
    conn = sessions()
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tenant_settings (tenant, setting_key, value) VALUES ('ACME', 'theme', JSON_OBJECT('n', 1))"
        )
    # When both spellings are read in one batch
    upper, lower = read_rows(conn, SETTINGS, [setting("ACME", "theme"), setting("acme", "theme")])
    # Then the stored spelling is present and the other is absent (its document is deleted, not overwritten)
    assert isinstance(upper, RowState) and upper.row is not None and upper.row["tenant"] == "ACME"
    assert isinstance(lower, RowState) and lower.row is None


def test_given_more_keys_than_one_read_takes_when_read_then_chunked_and_all_returned(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given more rows than one statement may name
    monkeypatch.setattr(source_reader, "MAX_KEYS_PER_READ", 4)
    conn = sessions()
    keys = insert_posts(conn, [f"p{i}" for i in range(10)])
    # When they are read together
    states = read_rows(conn, POSTS, [post(k) for k in keys])
    # Then every row comes back, in order
    assert [s.row["title"] for s in states if isinstance(s, RowState) and s.row] == [f"p{i}" for i in range(10)]


def test_given_absent_keys_when_read_in_a_batch_then_absent_with_a_version_in_one_read_not_one_each(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a committed row and three keys that do not exist (deleted rows, say), and no per-key read to fall back on
    conn = sessions()
    (present,) = insert_posts(conn, ["here"])

    def no_single_read(*args: Any) -> RowState:
        raise AssertionError("an absent key was read alone: no writer held it, the NOWAIT read decides")

    monkeypatch.setattr(source_reader, "read_row", no_single_read)
    before = read_clock(conn)
    # When they are read together
    states = read_rows(conn, POSTS, [post(999_997), post(present), post(999_998), post(999_999)])
    # Then the row is present, and the absent keys are absent (the fetcher deletes them from the sinks), each with a
    # database-clock version taken no earlier than the read started
    assert [s.row["title"] if isinstance(s, RowState) and s.row else None for s in states] == [None, "here", None, None]
    assert all(isinstance(s, RowState) and s.version >= before for s in states)


def test_given_an_open_insert_among_absent_keys_when_read_in_a_batch_then_it_is_waited_for_holding_nothing(
    sessions: Sessions,
) -> None:
    # Given two keys that do not exist and a third a writer has inserted in a transaction that stays open
    writer, reader, watcher = sessions(autocommit=False), sessions(), sessions()
    (pending,) = insert_posts(writer, ["pending"])
    out: dict[str, Any] = {}
    batch = [post(pending + 1000), post(pending), post(pending + 1001)]
    thread = threading.Thread(target=lambda: out.update(states=read_rows(reader, POSTS, batch)))
    thread.start()
    try:
        # When the batch is seen waiting: SKIP LOCKED left the pending row out, the NOWAIT read of the missing keys
        # met its lock, and the key is read alone, waiting, holding no lock of the NOWAIT read meanwhile
        waits = seen_waiting(watcher, reader.thread_id(), alive=thread.is_alive)
        assert {table for table, _ in waits} == {"posts"}, waits
        # (the reader takes shared locks only; the X lock performance_schema may list under its thread is the
        # writer's insert lock, made explicit by the reader's request)
        assert [held for held in row_locks_held(watcher, reader.thread_id()) if not held[1].startswith("X")] == []
        writer.commit()
    finally:
        writer.rollback()  # nothing left to undo once committed; on a failure, it lets the reader go
        thread.join(timeout=60)
    # Then the pending key is the committed insert (not a delete), and the absent keys are absent
    states = out["states"]
    assert [s.row["title"] if isinstance(s, RowState) and s.row else None for s in states] == [None, "pending", None]


def read_clock(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(CLOCK_SQL)
        return int(cur.fetchone()[0])
