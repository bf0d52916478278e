"""Test schemas and accounts on the project's MySQL: dropped so that a failed test cannot hang the next."""

from __future__ import annotations

from typing import Any


def drop_database(conn: Any, name: str) -> None:
    """DROP DATABASE that cannot hang: a connection a failed test left open in the schema (holding a metadata
    lock in an open transaction) is killed first, and the drop waits for metadata locks at most 30 s."""
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()", (name,))
        for (connection_id,) in cur.fetchall():
            try:
                cur.execute(f"KILL {int(connection_id)}")
            except Exception:  # noqa: BLE001 - it ended by itself meanwhile
                pass
        cur.execute("SET SESSION lock_wait_timeout = 30")
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def create_user(conn: Any, name: str, password: str, privileges: str, schema: str) -> None:
    """An account that may connect over TCP from anywhere, holding ``privileges`` on ``schema`` and nothing else."""
    with conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        cur.execute(f"GRANT {privileges} ON `{schema}`.* TO %s@'%%'", (name,))


def drop_user(conn: Any, name: str) -> None:
    """Drop the account, first killing its sessions (DROP USER leaves them running)."""
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (name,))
        for (connection_id,) in cur.fetchall():
            try:
                cur.execute(f"KILL {int(connection_id)}")
            except Exception:  # noqa: BLE001 - it ended by itself meanwhile
                pass
        cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
