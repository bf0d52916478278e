"""Connections to the source database (Aurora MySQL in AWS, MariaDB locally).

One connection per execution environment is reused across invocations
(connection reuse is most of a warm invocation's speed); it is checked with a
ping before use and re-opened when the server has closed it.
"""

from __future__ import annotations

import pymysql
import pymysql.cursors

from .config import DatabaseSettings


def connect(settings: DatabaseSettings, *, autocommit: bool = True) -> pymysql.connections.Connection:
    """Open a new connection with the session settings the fetcher relies on."""
    conn = pymysql.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=settings.name,
        charset="utf8mb4",
        connect_timeout=settings.connect_timeout,
        autocommit=autocommit,
        cursorclass=pymysql.cursors.Cursor,
    )
    with conn.cursor() as cur:
        # Times are exchanged in UTC whatever the server's default zone is, and a
        # locking read gives up after a bounded wait (a retryable error).
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (settings.lock_wait_timeout,))
    return conn


class ConnectionHolder:
    """Keeps one live connection, re-opened when it has gone away."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._conn: pymysql.connections.Connection | None = None

    def get(self) -> pymysql.connections.Connection:
        if self._conn is not None:
            try:
                self._conn.ping(reconnect=False)
                return self._conn
            except pymysql.err.Error:
                self.close()
        self._conn = connect(self._settings)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except pymysql.err.Error:
                pass
            self._conn = None
