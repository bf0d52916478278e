"""Applying the versioned migrations to the source database, once each, in version order.

Every run is recorded in the ``fanout_schema_history`` table of the connection's current
schema, with a checksum of the file, so an applied migration that is later edited is
refused instead of silently drifting from what the database holds. The files, their
placeholders and how a script is split into statements: :mod:`fanout.capture.migration_scripts`.

MySQL commits DDL implicitly, so a migration cannot be rolled back when one
of its statements fails: the runner records the failure truthfully instead and refuses
to go on until an operator has fixed the file and cleared the record with
:meth:`MigrationRunner.repair`. Write migrations so they can be re-run after a partial
failure (``DROP TRIGGER IF EXISTS`` before ``CREATE TRIGGER``, ``IF NOT EXISTS``).

One failure is the server's configuration, not the file's: with binary logging on, MySQL lets
a user without SUPER create triggers only when ``log_bin_trust_function_creators`` is 1, and
Aurora gives no user SUPER. Errors 1418/1419 are therefore reported as the cluster parameter to
set, and not recorded as a failed migration: the same file runs again once the parameter is on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pymysql
import pymysql.connections

from fanout.capture.migration_scripts import (
    Migration,
    MigrationError,
    load_migrations,
    render,
    split_statements,
    validate_placeholders,
)
from fanout.capture.trigger_columns import created_trigger, missing_columns
from fanout.source import locks
from fanout.source.sql import quote_identifier

logger = logging.getLogger(__name__)

HISTORY_TABLE = "fanout_schema_history"
LOCK_NAME_PREFIX = "fanout_schema_migrations"
_MAX_ERROR_CHARS = 8000  # what is kept of an error in the history table (a TEXT column)
# ER_BINLOG_UNSAFE_ROUTINE, ER_BINLOG_CREATE_ROUTINE_NEED_SUPER: binary logging on, no SUPER, and
# log_bin_trust_function_creators = 0.
BINLOG_TRUST_ERRORS = frozenset({1418, 1419})
BINLOG_TRUST_FIX = (
    "the database refused to create a trigger: set log_bin_trust_function_creators = 1 in the DB cluster "
    "parameter group (with binary logging on, only a user with SUPER may create triggers otherwise, and Aurora "
    "gives no user SUPER), then deploy again or run `fanout migrate`; nothing needs repairing"
)

MigrationState = Literal["applied", "pending", "modified", "failed", "missing"]
Connector = Callable[[], pymysql.connections.Connection]


@dataclass(frozen=True)
class MigrationStatus:
    """Where one migration stands: a file, a history row, or both."""

    version: int
    description: str
    state: MigrationState
    applied_at: datetime | None
    checksum: str  # the file's checksum; the recorded one when the file is missing
    recorded_checksum: str | None = None
    error: str | None = None


@dataclass
class MigrationReport:
    """What a :meth:`MigrationRunner.migrate` run did (or, for a dry run, would do)."""

    dry_run: bool
    pending: list[int] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    statements: dict[int, list[str]] = field(default_factory=dict)  # dry run: version -> rendered SQL
    current_version: int | None = None


@dataclass(frozen=True)
class _HistoryRow:
    version: int
    description: str
    checksum: str
    applied_at: datetime | None
    success: bool
    error: str | None


class TriggersNotTrusted(MigrationError):
    """The server refused a trigger because ``log_bin_trust_function_creators`` is off (errors 1418/1419)."""


def binlog_trust_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is the server refusing a trigger to a user without SUPER while binary logging is on."""
    return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in BINLOG_TRUST_ERRORS


def _refuse_triggers_on_missing_columns(
    conn: pymysql.connections.Connection, schema: str, planned: Sequence[tuple[Migration, list[str]]]
) -> None:
    """Raise before anything runs if a trigger the pending migrations create reads a column (or a table) the
    schema lacks: installed, it would fail every write to its table (1054 "Unknown column ... in 'NEW'")."""
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s", (schema,))
        columns: dict[str, set[str]] = {}
        for table, column in cur.fetchall():
            columns.setdefault(str(table), set()).add(str(column))
    refused = []
    for migration, statements in planned:
        for statement in statements:
            created = created_trigger(statement)
            if created is not None and (missing := missing_columns(created[1], created[2], columns)):
                refused.append(f"V{migration.version:03d} trigger {created[0]} reads {', '.join(missing)}")
    if refused:
        raise MigrationError(
            f"refusing to install triggers that name what schema {schema} lacks (every write to the table would fail):"
            f" {'; '.join(refused)}. Restore the column, or change the mapping, generate a new migration"
            " (fanout migrations generate) and deploy it in place of this one; `fanout check` lists every drift"
        )


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"MySQL error {exc.args[0]}: {exc.args[1]}"
    return f"{type(exc).__name__}: {exc}"


class MigrationRunner:
    """Applies the migrations in ``directory`` to the schema ``connect()`` opens.

    ``connect`` returns a new pymysql connection whose current database is the target;
    the runner opens one per operation and closes it afterwards. Runs are serialised by
    a user-level lock (``GET_LOCK``) named after the schema, so two deployments, or a
    deployment and an operator, cannot apply the same migration twice.
    """

    def __init__(
        self,
        connect: Connector,
        directory: str | Path,
        placeholders: Mapping[str, str],
        applied_by: str,
        lock_timeout: int = 60,
    ) -> None:
        validate_placeholders(placeholders)
        self._connect = connect
        self.directory = Path(directory)
        self.placeholders = dict(placeholders)
        self.applied_by = applied_by[:200]
        self.lock_timeout = lock_timeout

    # -- public operations

    def status(self) -> list[MigrationStatus]:
        """Every migration known from the files or the history, by version. Read-only."""
        migrations = {m.version: m for m in load_migrations(self.directory)}
        with self._session() as (conn, schema):
            history = self._read_history(conn, schema) if self._history_exists(conn, schema) else {}
        result: list[MigrationStatus] = []
        for version in sorted(migrations.keys() | history.keys()):
            migration, row = migrations.get(version), history.get(version)
            state: MigrationState
            if row is None:
                state = "pending"
            elif not row.success:
                state = "failed"
            elif migration is None:
                state = "missing"
            elif migration.checksum != row.checksum:
                state = "modified"
            else:
                state = "applied"
            result.append(
                MigrationStatus(
                    version=version,
                    description=migration.description if migration else row.description if row else "",
                    state=state,
                    applied_at=row.applied_at if row else None,
                    checksum=migration.checksum if migration else row.checksum if row else "",
                    recorded_checksum=row.checksum if row else None,
                    error=row.error if row else None,
                )
            )
        return result

    def migrate(self, dry_run: bool = False) -> MigrationReport:
        """Apply every pending migration, in version order, one statement at a time.

        Before anything runs: applied migrations must still match their files, no failed
        migration may be on record, and no pending migration may be older than the newest
        applied one; every pending migration must render and split. A dry run stops there
        and returns the statements it would execute, changing nothing (it does not even
        create the history table).

        A failing statement is recorded in the history (``success = 0``, with the
        statement's position and the server's error) and raised as
        :class:`MigrationError`. Statements before it in the same migration stay applied:
        MySQL commits DDL implicitly, so the history tells the truth rather than rolling
        back. Fix the file, run :meth:`repair`, and migrate again.
        """
        migrations = load_migrations(self.directory)
        report = MigrationReport(dry_run=dry_run)
        with self._session() as (conn, schema), self._locked(conn, schema):
            if not dry_run:
                self._create_history_table(conn, schema)
            history = self._read_history(conn, schema) if self._history_exists(conn, schema) else {}
            self._check_history(migrations, history)
            files = {m.version for m in migrations}
            report.missing = sorted(v for v, row in history.items() if row.success and v not in files)
            for version in report.missing:
                logger.warning("migration V%s is recorded as applied but its file is gone", version)
            report.skipped = [m.version for m in migrations if m.version in history]
            pending = [m for m in migrations if m.version not in history]
            report.pending = [m.version for m in pending]
            # Render and split everything first, so a bad placeholder in V3 stops V2 too.
            planned = [(m, self._statements_of(m)) for m in pending]
            _refuse_triggers_on_missing_columns(conn, schema, planned)
            if dry_run:
                report.statements = {m.version: statements for m, statements in planned}
            else:
                for migration, statements in planned:
                    self._apply(conn, schema, migration, statements)
                    report.applied.append(migration.version)
            applied_versions = [v for v, row in history.items() if row.success] + report.applied
            report.current_version = max(applied_versions, default=None)
        return report

    def repair(self) -> list[int]:
        """Delete the history rows of failed migrations, so the next run retries them."""
        with self._session() as (conn, schema), self._locked(conn, schema):
            if not self._history_exists(conn, schema):
                return []
            table = self._history_table(schema)
            with conn.cursor() as cur:
                cur.execute(f"SELECT version FROM {table} WHERE success = 0 ORDER BY version")  # noqa: S608
                failed = [int(row[0]) for row in cur.fetchall()]
                cur.execute(f"DELETE FROM {table} WHERE success = 0")  # noqa: S608
        if failed:
            logger.info("cleared failed migrations %s", failed)
        return failed

    def uninstall(self, trigger_prefix: str = "fanout_") -> list[str]:
        """Drop the schema's triggers whose names start with ``trigger_prefix``, and the history.

        The history goes too, so a later install applies every migration again instead
        of believing the dropped triggers still exist. Tables the migrations created are
        left alone.
        """
        with self._session() as (conn, schema), self._locked(conn, schema), conn.cursor() as cur:
            cur.execute(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s ORDER BY TRIGGER_NAME",
                (schema,),
            )
            names = [str(row[0]) for row in cur.fetchall() if str(row[0]).startswith(trigger_prefix)]
            for name in names:
                cur.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(schema)}.{quote_identifier(name)}")
            cur.execute(f"DROP TABLE IF EXISTS {self._history_table(schema)}")
        logger.info("dropped triggers %s and the migration history of schema %s", names, schema)
        return names

    # -- connection and lock

    @staticmethod
    def lock_name(schema: str) -> str:
        """The user-level lock for ``schema`` (lock names are server-wide, histories per schema)."""
        return locks.lock_name(LOCK_NAME_PREFIX, schema)

    @contextmanager
    def _session(self) -> Iterator[tuple[pymysql.connections.Connection, str]]:
        """A fresh connection and the name of its current schema; closed afterwards."""
        conn = self._connect()
        try:
            conn.autocommit(True)
            schema = locks.current_schema(conn)
            if schema is None:
                raise MigrationError("the connection has no current database to migrate")
            yield conn, schema
        finally:
            with suppress(pymysql.err.Error):
                conn.close()

    @contextmanager
    def _locked(self, conn: pymysql.connections.Connection, schema: str) -> Iterator[None]:
        """Hold the schema's migration lock; released on the way out, whatever happens."""
        name = self.lock_name(schema)
        if not locks.try_lock(conn, name, self.lock_timeout):
            with conn.cursor() as cur:
                cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
                holder = cur.fetchone()
            raise MigrationError(
                f"could not take the migration lock {name!r} within {self.lock_timeout} s: another migration "
                f"is running (held by connection {holder[0] if holder else None}); try again when it has finished"
            )
        try:
            yield
        finally:
            try:
                locks.release_lock(conn, name)
            except pymysql.err.Error:
                # The connection is gone, and the server released the lock with it.
                logger.warning("could not release migration lock %s", name, exc_info=True)

    # -- history table

    @staticmethod
    def _history_table(schema: str) -> str:
        # Qualified, so a migration that runs USE cannot redirect the bookkeeping. The
        # name is quoted here, which is why the queries that embed it are marked noqa: S608.
        return f"{quote_identifier(schema)}.{quote_identifier(HISTORY_TABLE)}"

    @staticmethod
    def _history_exists(conn: pymysql.connections.Connection, schema: str) -> bool:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (schema, HISTORY_TABLE),
            )
            return cur.fetchone() is not None

    def _create_history_table(self, conn: pymysql.connections.Connection, schema: str) -> None:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._history_table(schema)} ("
                " version INT NOT NULL PRIMARY KEY,"
                " description VARCHAR(200) NOT NULL,"
                " checksum CHAR(64) NOT NULL,"
                " applied_at DATETIME(6) NOT NULL,"
                " duration_ms INT NOT NULL,"
                " applied_by VARCHAR(200) NOT NULL,"
                " success TINYINT(1) NOT NULL,"
                " error TEXT NULL"
                ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )

    def _read_history(self, conn: pymysql.connections.Connection, schema: str) -> dict[int, _HistoryRow]:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT version, description, checksum, applied_at, success, error"  # noqa: S608
                f" FROM {self._history_table(schema)} ORDER BY version"
            )
            rows: Sequence[tuple[Any, ...]] = cur.fetchall()
        history: dict[int, _HistoryRow] = {}
        for version, description, checksum, applied_at, success, error in rows:
            history[int(version)] = _HistoryRow(
                int(version), str(description), str(checksum), applied_at, bool(success), error and str(error)
            )
        return history

    def _record(
        self,
        conn: pymysql.connections.Connection,
        schema: str,
        migration: Migration,
        duration_ms: int,
        error: str | None,
    ) -> None:
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self._history_table(schema)}"  # noqa: S608
                " (version, description, checksum, applied_at, duration_ms, applied_by, success, error)"
                " VALUES (%s, %s, %s, UTC_TIMESTAMP(6), %s, %s, %s, %s)",
                (
                    migration.version,
                    migration.description,
                    migration.checksum,
                    duration_ms,
                    self.applied_by,
                    0 if error else 1,
                    error,
                ),
            )

    # -- checks and application

    @staticmethod
    def _check_history(migrations: list[Migration], history: Mapping[int, _HistoryRow]) -> None:
        modified = [
            f"V{m.version} ({m.path.name}): recorded checksum {history[m.version].checksum}, file checksum {m.checksum}"
            for m in migrations
            if m.version in history and history[m.version].success and history[m.version].checksum != m.checksum
        ]
        if modified:
            raise MigrationError(
                "applied migrations were modified after they ran; nothing was applied. Restore the files and put "
                "changes in a new migration instead. " + "; ".join(modified)
            )
        failed = [row for row in history.values() if not row.success]
        if failed:
            row = failed[0]
            raise MigrationError(
                f"migration V{row.version} ({row.description}) failed on an earlier run: {row.error}. "
                "Fix the migration file (statements before the failing one have already been applied), "
                "then run `fanout migrate --repair` to clear the failure and migrate again."
            )
        newest_applied = max((v for v, row in history.items() if row.success), default=0)
        late = [m for m in migrations if m.version not in history and m.version < newest_applied]
        if late:
            names = ", ".join(m.path.name for m in late)
            raise MigrationError(
                f"pending migrations {names} are older than the newest applied migration V{newest_applied}; "
                "renumber them above it"
            )

    def _statements_of(self, migration: Migration) -> list[str]:
        sql = render(migration.sql, self.placeholders, source=migration.path.name)
        try:
            return split_statements(sql)
        except MigrationError as exc:
            raise MigrationError(f"{migration.path.name}: {exc}") from None

    def _apply(
        self, conn: pymysql.connections.Connection, schema: str, migration: Migration, statements: list[str]
    ) -> None:
        logger.info("applying migration V%s (%s)", migration.version, migration.description)
        started = time.monotonic()
        for position, statement in enumerate(statements, start=1):
            try:
                with conn.cursor() as cur:
                    cur.execute(statement)
            except pymysql.err.Error as exc:
                if binlog_trust_refusal(exc):
                    # One line (the hook's reason, the CLI's message). The statement changed nothing and the
                    # migration is re-runnable (see the rules above), so it is not recorded as failed.
                    raise TriggersNotTrusted(
                        f"{BINLOG_TRUST_FIX} (migration V{migration.version} ({migration.path.name}), statement "
                        f"{position} of {len(statements)}: {_describe_error(exc)})"
                    ) from exc
                duration_ms = int((time.monotonic() - started) * 1000)
                excerpt = statement if len(statement) <= 500 else statement[:500] + "..."
                error = f"statement {position} of {len(statements)} failed: {_describe_error(exc)}\n{excerpt}"
                error = error[:_MAX_ERROR_CHARS]
                message = f"migration V{migration.version} ({migration.path.name}) failed: {error}"
                try:
                    self._record(conn, schema, migration, duration_ms, error)
                except pymysql.err.Error as record_exc:
                    message += f" (and the failure could not be recorded: {_describe_error(record_exc)})"
                raise MigrationError(message) from exc
        duration_ms = int((time.monotonic() - started) * 1000)
        self._record(conn, schema, migration, duration_ms, None)
        logger.info("applied migration V%s in %d ms", migration.version, duration_ms)
