"""Re-reading a changed row from the source database (docs/architecture.md, "Versions and sinks").

The trigger fired inside the writer's transaction, possibly before it
committed. A *locking* read (``FOR SHARE``) waits until that transaction ends
and then returns the committed state: the new row, the old row after a ROLLBACK,
or nothing. A plain read would not wait: at REPEATABLE READ or READ COMMITTED it
returns the last committed row at once, before the writer's outcome is known.

The version of what was read comes from the database clock: ``SYSDATE(6)``
taken *while the shared lock is held* (no writer can change the row in that
instant), or, for an absent row, taken *before* the read. Any later committed
change is re-read later, under a later clock, so sinks that keep the highest
version converge on the source.

A row is the change's row only if its stored key is *exactly* the change's
key. Under a case-insensitive or PAD SPACE collation, ``WHERE tenant =
'acme'`` also finds the row stored as ``'ACME'`` (or ``'acme '``); the sinks
key documents by the stored value, so for the key ``'acme'`` that row is
absent, and a key change from ``'acme'`` to ``'ACME'`` moves the document.

Nothing here assumes one reader per row: any number of fetchers (and a
backfill) may read the same row at once; each gets the state and the instant
it read, and the sinks keep the highest instant, so they agree on the winner.

The rows it returns and the typing of their values: :mod:`fanout.source.rows`. What the fetcher
(fanout.pipeline.fetcher.Fetcher) reads through is a :class:`RowSource`: :class:`DatabaseSource` over MySQL
(tests pass an in-memory one). A single read is a batch of one, and whether a table's rows are read plainly or
composed from several tables is decided in one place, :func:`read_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pymysql

from fanout.deadline import NO_DEADLINE, TimeLeft
from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.source.composition_read import ER_LOCK_NOWAIT, compose_rows, root_page
from fanout.source.connection import lock_wait_seconds
from fanout.source.rows import (
    CLOCK_SQL,
    RETRYABLE_MYSQL_ERRORS,
    SHARE_NOWAIT,
    SHARE_SKIP_LOCKED,
    RowState,
    SourceReadError,
    has_exact_key,
    select_row_sql,
    typed_row,
)
from fanout.source.sql import column_list, quote_identifier, selected_columns

# Keys per batched read: bounds the statement size and how many shared locks one read holds.
MAX_KEYS_PER_READ = 500


def select_rows_sql(mapping: TableMapping, count: int, lock: str = SHARE_SKIP_LOCKED) -> str:
    """All rows of ``count`` keys in one statement, with ``lock``: by default rows locked by a writer are skipped,
    not waited for; with ``FOR SHARE NOWAIT`` such a row fails the statement at once (3572)."""
    key = f"({column_list(mapping.key_columns)})"
    one = "(" + ", ".join(["%s"] * len(mapping.key_columns)) + ")"
    # Identifiers come from the validated mapping; key values are bound parameters.
    table = quote_identifier(mapping.table)
    keys = ", ".join([one] * count)
    return f"SELECT {selected_columns(mapping)} FROM {table} WHERE {key} IN ({keys}) {lock}"  # noqa: S608


def _exact_key(row: dict[str, Any], mapping: TableMapping) -> tuple[Any, ...]:
    return tuple(row.get(column) for column in mapping.key_columns)


def read_rows(
    conn: pymysql.connections.Connection,
    mapping: TableMapping,
    changes: Sequence[Change],
    deadline: TimeLeft = NO_DEADLINE,
) -> list[RowState | Exception]:
    """The committed state of every change's row, in order: one locking read per
    ``MAX_KEYS_PER_READ`` keys that never waits (SKIP LOCKED), then one ``FOR SHARE NOWAIT`` read of the keys it
    did not return (:func:`_read_missing`), and only if that read meets a writer's lock, each of them read alone
    with the waiting locking read of :func:`read_row`.

    A key the batch did not return is either absent or *locked by an open writer*: it is never taken for a
    delete on the batch's word. The NOWAIT read tells them apart without waiting: it fails (3572) if any of the
    keys is locked, and then the single reads wait the writers out (bounded) and decide; if it succeeds, no
    writer held any of them, and a key it did not return is absent (a delete, or an insert rolled back). A
    delete-heavy batch so costs one more statement, not a read per key. One ``SYSDATE(6)`` taken after
    the batch read, while every returned row's shared lock is still held, is a valid version for all of
    them. An item is an exception when that key could not be read now (retryable), so one locked key does
    not fail the others. A waiting read starts only while the longest wait it may take
    (``innodb_lock_wait_timeout``) fits in ``deadline``; a key it cannot start for is an exception (retried).
    """
    if mapping.composition is not None:  # a document built from several tables: the composed read
        return compose_rows(conn, mapping, changes, deadline)
    states: list[RowState | Exception | None] = [None] * len(changes)
    for start in range(0, len(changes), MAX_KEYS_PER_READ):
        chunk = changes[start : start + MAX_KEYS_PER_READ]
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for offset, change in enumerate(chunk):
            by_key.setdefault(change.key_values, []).append(start + offset)
        params = [value for change in chunk for value in change.key_values]
        try:
            with conn.cursor() as cur:
                conn.begin()
                try:
                    cur.execute(select_rows_sql(mapping, len(chunk)), params)
                    found = cur.fetchall()
                    rows = [typed_row(cur, raw, mapping) for raw in found]
                    version = 0
                    if rows:
                        cur.execute(CLOCK_SQL)  # still holding every returned row's shared lock
                        version = int(cur.fetchone()[0])
                finally:
                    conn.commit()  # releases the shared locks
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code in RETRYABLE_MYSQL_ERRORS:
                error = SourceReadError(f"{RETRYABLE_MYSQL_ERRORS[code]} reading {mapping.table}; will retry")
                for offset in range(len(chunk)):
                    states[start + offset] = error
                continue
            raise
        for row in rows:
            # only a row whose stored key is exactly a change's key is that change's row (collations)
            for index in by_key.get(_exact_key(row, mapping), ()):
                if has_exact_key(row, changes[index]):
                    states[index] = RowState(row, version)
    missing = [index for index, state in enumerate(states) if state is None]
    for start in range(0, len(missing), MAX_KEYS_PER_READ):
        indices = missing[start : start + MAX_KEYS_PER_READ]
        for index, state in zip(indices, _read_missing(conn, mapping, [changes[i] for i in indices]), strict=True):
            states[index] = state  # None: some key of the chunk is locked, the waiting read below decides
    longest_wait: float | None = None
    for index, state in enumerate(states):
        if state is None:  # skipped because a writer holds it (or a key beside it): the waiting read decides
            left = deadline.left()
            if longest_wait is None and left != math.inf:
                longest_wait = lock_wait_seconds(conn)
            if longest_wait is not None and left <= longest_wait + 1:
                states[index] = SourceReadError(f"out of time for a waiting read of {mapping.table}; will retry")
                continue
            try:
                states[index] = read_row(conn, mapping, changes[index])
            except SourceReadError as exc:
                states[index] = exc
    return [state for state in states if state is not None]


def _read_missing(
    conn: pymysql.connections.Connection, mapping: TableMapping, changes: Sequence[Change]
) -> list[RowState | Exception | None]:
    """The keys the SKIP LOCKED read did not return, read together with ``FOR SHARE NOWAIT``: each its state, or
    all None when the read met a writer's lock (3572; rolled back at once, so nothing is held while the waiting
    reads wait). The version of an absent key is the instant before the read, as :func:`read_row` takes it; a row
    committed since the first read comes back with the instant taken under its lock."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for offset, change in enumerate(changes):
        by_key.setdefault(change.key_values, []).append(offset)
    try:
        with conn.cursor() as cur:
            conn.begin()
            try:
                cur.execute(CLOCK_SQL)
                before = int(cur.fetchone()[0])
                cur.execute(select_rows_sql(mapping, len(changes), SHARE_NOWAIT),
                            [value for change in changes for value in change.key_values])  # fmt: skip
                rows = [typed_row(cur, raw, mapping) for raw in cur.fetchall()]
                version = before
                if rows:
                    cur.execute(CLOCK_SQL)  # still holding every returned row's shared lock
                    version = int(cur.fetchone()[0])
            finally:
                if conn.open:  # a lost connection has no lock to release; committing would mask its error
                    conn.commit()  # releases the shared locks (after a 3572, the statement's own)
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code == ER_LOCK_NOWAIT:
            return [None] * len(changes)
        if code in RETRYABLE_MYSQL_ERRORS:
            return [SourceReadError(f"{RETRYABLE_MYSQL_ERRORS[code]} reading {mapping.table}; will retry")] * len(
                changes
            )
        raise
    states: list[RowState | Exception | None] = [RowState(None, before) for _ in changes]
    for row in rows:
        for offset in by_key.get(_exact_key(row, mapping), ()):
            if has_exact_key(row, changes[offset]):
                states[offset] = RowState(row, version)
    return states


def read_row(conn: pymysql.connections.Connection, mapping: TableMapping, change: Change) -> RowState:
    """Read the committed state of the changed row of a plain table, waiting out an open writer (bounded).

    :func:`read_rows` calls it for each key its batch did not return; it is not a second way in: whether a
    table is read plainly or composed is decided by :func:`read_rows` alone."""
    assert mapping.composition is None, "a composed document is read by read_rows (compose_rows)"
    try:
        with conn.cursor() as cur:
            conn.begin()
            try:
                cur.execute(CLOCK_SQL)
                before = int(cur.fetchone()[0])
                cur.execute(select_row_sql(mapping), change.key_values)
                found = cur.fetchone()
                if found is None:
                    return RowState(None, before)
                row = typed_row(cur, found, mapping)
                cur.execute(CLOCK_SQL)  # still holding the shared lock
                version = int(cur.fetchone()[0])
                # a row found only through the collation is another key's row: this key is absent
                return RowState(row if has_exact_key(row, change) else None, version)
            finally:
                if conn.open:  # a lost connection has no lock to release; committing would mask its error
                    conn.commit()  # releases the shared lock
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code in RETRYABLE_MYSQL_ERRORS:
            raise SourceReadError(
                f"{RETRYABLE_MYSQL_ERRORS[code]} reading {mapping.table} key {change.document_id}; will retry"
            ) from exc
        raise


# --------------------------------------------------------------------------- what the fetcher reads through

T = TypeVar("T")


class RowSource(Protocol):
    def read_rows(
        self, mapping: TableMapping, changes: Sequence[Change], *, deadline: TimeLeft = NO_DEADLINE
    ) -> Sequence[RowState | Exception]:
        """The committed state of every change's row, in order; an item is an exception when that key could not
        be read now (retryable), or not within ``deadline``."""
        ...

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        """At most ``page_size`` root changes a change via a relation touches, in root-key order after
        ``change.after``."""
        ...


class Connections(Protocol):
    """Runs a piece of work on a live connection (fanout.source.connection.ConnectionHolder)."""

    def call(self, work: Callable[[pymysql.connections.Connection], T]) -> T: ...

    def close(self) -> None: ...


class OneConnection:
    """One connection the caller owns and closes (tests, benchmarks, tools)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def call(self, work: Callable[[Any], T]) -> T:
        return work(self._conn)

    def close(self) -> None:
        """The caller closes its connection."""


class DatabaseSource:
    """The source database through ``connections``: a ConnectionHolder replaces a connection found dead (restart,
    failover, KILL) and repeats the read once, which is idempotent."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    @classmethod
    def over(cls, conn: Any) -> DatabaseSource:
        """Reads on ``conn``, which the caller keeps and closes."""
        return cls(OneConnection(conn))

    def read_rows(
        self, mapping: TableMapping, changes: Sequence[Change], *, deadline: TimeLeft = NO_DEADLINE
    ) -> list[RowState | Exception]:
        return self._connections.call(lambda conn: read_rows(conn, mapping, changes, deadline))

    def close(self) -> None:
        self._connections.close()

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        # a plain read, no lock: the roots are then read like any root change
        return self._connections.call(lambda conn: root_page(conn, mapping, change, page_size))
