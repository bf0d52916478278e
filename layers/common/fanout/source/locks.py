"""User-level locks per schema (``GET_LOCK``): how drainers, sweeps and migration runs take turns.

A user-level lock belongs to the connection that took it: the server releases it when
that connection ends, so a crashed holder never keeps it. It locks no row, so holding
one never blocks an application transaction.
"""

from __future__ import annotations

from typing import Any

MAX_LOCK_NAME = 64  # MySQL 5.7+ refuses longer user-level lock names


def lock_name(prefix: str, schema: str) -> str:
    """``<prefix>:<schema>``, cut to what MySQL accepts (lock names are server-wide, the work is per schema)."""
    return f"{prefix}:{schema}"[:MAX_LOCK_NAME]


def current_schema(conn: Any) -> str | None:
    """The connection's current database, or None when it has none."""
    with conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        row = cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


def try_lock(conn: Any, name: str, timeout_s: int = 0) -> bool:
    """Take the lock, waiting at most ``timeout_s`` (0: never waits); whether it was taken."""
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, timeout_s))
        row = cur.fetchone()
    return row is not None and row[0] == 1


def release_lock(conn: Any, name: str) -> None:
    with conn.cursor() as cur:
        cur.execute("DO RELEASE_LOCK(%s)", (name,))


def is_free_lock(conn: Any, name: str) -> bool:
    """Whether no connection holds the lock (a look: it takes nothing)."""
    with conn.cursor() as cur:
        cur.execute("SELECT IS_FREE_LOCK(%s)", (name,))
        row = cur.fetchone()
    return row is not None and row[0] == 1
