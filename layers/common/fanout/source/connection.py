"""Connections to the source database (Aurora MySQL 3 in AWS, MySQL 8.0 locally).

One connection per execution environment is reused across invocations
(connection reuse is most of a warm invocation's speed); it is checked with a
ping before use and re-opened when the server has closed it.

Connections use TLS with certificate verification wherever the database is not
on loopback (``DB_TLS``, ``DB_CA_BUNDLE``: fanout.config, docs/security.md).

Credentials are read from the secret in AWS (Powertools Parameters, cached for
a few minutes: fanout.config). When the database secret is rotated, open
connections keep working, but the next login with the cached password is
refused: the holder then re-reads the settings once (``reload``: the secret,
fetched again past the cache) and logs in again, so a rotation needs no
redeploy and no restart (docs/runbook.md, "Rotate the database secret").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pymysql
import pymysql.cursors

from fanout.config import DatabaseSettings
from fanout.observability import log

T = TypeVar("T")

# MySQL error codes that mean "these credentials are not (or no longer) valid".
ER_DBACCESS_DENIED_ERROR = 1044
ER_ACCESS_DENIED_ERROR = 1045
ACCESS_DENIED = frozenset({ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR})


# Client and server error codes that mean "this connection is gone" (killed, server restarted, failed over):
# CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED. A connection killed by the server (KILL,
# wait_timeout, a restart) reaches pymysql as 2013, idle or in the middle of a statement.
CONNECTION_LOST = frozenset({2006, 2013, 2055})


def is_access_denied(error: BaseException) -> bool:
    return isinstance(error, pymysql.err.OperationalError) and bool(error.args) and error.args[0] in ACCESS_DENIED


def is_connection_lost(error: BaseException) -> bool:
    if isinstance(error, pymysql.err.InterfaceError):  # pymysql's word for "used after the socket closed"
        return True
    return isinstance(error, pymysql.err.OperationalError) and bool(error.args) and error.args[0] in CONNECTION_LOST


def tls_options(settings: DatabaseSettings) -> dict[str, Any]:
    """pymysql's TLS arguments for ``settings.tls``.

    With a CA given, pymysql *requires* TLS: a server (or a man in the middle)
    that does not offer it is refused, never silently used in clear. "off" turns
    TLS off outright (pymysql would otherwise try it unverified).
    """
    if settings.tls == "off":
        return {"ssl_disabled": True}
    return {
        "ssl_ca": settings.ca_bundle,
        "ssl_verify_cert": True,
        "ssl_verify_identity": settings.tls == "verify-identity",
    }


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
        **tls_options(settings),
    )
    with conn.cursor() as cur:
        # Times are exchanged in UTC whatever the server's default zone is, and a
        # locking read gives up after a bounded wait (a retryable error).
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (settings.lock_wait_timeout,))
    return conn


def lock_wait_seconds(conn: pymysql.connections.Connection) -> float:
    """How long a waiting locking read of this session may wait for a writer at most (``innodb_lock_wait_timeout``)."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
        row = cur.fetchone()
    return float(row[0]) if row else 0.0


class ConnectionHolder:
    """Keeps one live connection, re-opened when it has gone away.

    ``reload`` (e.g. ``DatabaseSettings.from_env``, which reads the secret) is
    called once when a login is refused, in case the credentials were rotated;
    a second refusal is raised.
    """

    def __init__(self, settings: DatabaseSettings, reload: Callable[[], DatabaseSettings] | None = None) -> None:
        self._settings = settings
        self._reload = reload
        self._conn: pymysql.connections.Connection | None = None

    @classmethod
    def from_env(cls) -> ConnectionHolder:
        """The database the environment names; a refused login re-reads the secret, bypassing its cache."""
        return cls(DatabaseSettings.from_env(), reload=DatabaseSettings.reread_from_env)

    def get(self) -> pymysql.connections.Connection:
        if self._conn is not None:
            try:
                self._conn.ping(reconnect=False)
                return self._conn
            except pymysql.err.Error:
                self.close()
        try:
            self._conn = connect(self._settings)
        except pymysql.err.OperationalError as exc:
            if self._reload is None or not is_access_denied(exc):
                raise
            log(logging.WARNING, "database login refused; re-reading the credentials", error=str(exc))
            self._settings = self._reload()
            self._conn = connect(self._settings)
        return self._conn

    def call(self, work: Callable[[pymysql.connections.Connection], T]) -> T:
        """``work(connection)``, run once more on a new connection if the connection turns out to be gone.

        A server restart or a ``KILL`` is only seen when the connection is next
        used (a ping just before can still pass), so one idempotent piece of work
        (a read) is repeated at once rather than failing the whole invocation.
        Any other error, or a second loss, is raised.
        """
        try:
            return work(self.get())
        except pymysql.err.Error as exc:
            self.close()
            if not is_connection_lost(exc):
                raise
            log(logging.WARNING, "database connection lost; once more on a new connection", error=str(exc))
        try:
            return work(self.get())
        except pymysql.err.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except pymysql.err.Error:
                pass
            self._conn = None
