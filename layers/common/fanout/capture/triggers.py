"""Capture-trigger SQL, generated from the table mapping (``fanout migrations generate``).

Users never hand-write trigger SQL: for every mapped table and every action it
captures, this module writes an ``AFTER <action>`` trigger that appends the change
(the payload of format version 1, docs/architecture.md) to the change log,
``fanout_change_log``, and *rings* the parser with ``lambda_async`` at most once
per statement and at most once per second of the clock for the whole schema,
whatever the number of sessions — and never while a drainer holds the drain
lock. The parser then drains the log (:mod:`fanout.capture.change_log`). The trigger cannot break the
statement that fired it through the ring:

* **Kill switch.** When the session has ``SET @fanout_disable = 1``, the trigger
  does nothing at all (no log row, no ring). Bulk jobs set it; the backfill
  replicates what they changed.
* **Transactional capture.** The log is InnoDB, written in the application's own
  transaction: a ROLLBACK leaves nothing, nothing is visible before COMMIT, and a
  change is captured even when Lambda is unreachable. Only if the log row cannot
  be written does the statement fail — loudly, rather than lose the change.
* **The ring** (``lambda_async`` of ``{"v": 2, "ring": "change_log", ...}``) runs
  under ``DECLARE CONTINUE HANDLER FOR SQLEXCEPTION``: a failed ring (Aurora's
  ERROR 1873, a missing grant) only leaves the row for the next drainer or the
  sweeper. It is sent for the statement's first row only (``@fanout_statement_at``
  holds the statement's ``NOW(6)``, constant within a statement), only when
  ``IS_FREE_LOCK`` says no drainer is at work (a read of the server's lock table,
  no row lock, no snapshot), and only by the session that takes this second's
  *ring token*: a user-level lock named by the second of the clock
  (``UNIX_TIMESTAMP(SYSDATE(6))``, read before the drain lock is looked at) and
  the schema, taken with ``GET_LOCK(name, 0)``, which never waits. The session
  keeps it (``@fanout_ring_token``) until it rings in a later second; a failed
  ring gives it back. The log row is written *before* these checks, which is what
  the drainer's last look after releasing the lock relies on.
* **The throttle is safe.** A burst on a cold parser used to ring once per
  statement until the first drainer held the lock: thousands of invokes. Now the
  schema rings at most once a second. A statement held back by the token wrote its
  row within the second its ring ``r`` took the token in, and ``r`` found the
  drain lock free after that second began; so any drainer holding the lock later
  took it after the second began, and every drainer keeps the lock at least
  ``RING_INTERVAL_SECONDS`` after it has seen the log empty
  (:func:`fanout.capture.change_log.drain`), so past the row, and its last look
  after the release finds it. The drainer ``r`` started holds the lock itself or
  finds it held: either way a holder after ``r`` exists. A drainer out of time
  before its linger ends rings its successor, itself started after ``r``; a ring
  that is lost leaves its second's statements to the sweeper, as it always left
  its own.

Each generated migration creates its triggers under names that carry its version
(``fanout_posts_after_insert_v006``) and only then drops the triggers that earlier
migrations created (found by reading those files). For a moment both fire, which
the pipeline tolerates (every delivery is at-least-once), but there is never a
moment with no trigger at all — ``DROP`` then ``CREATE`` of one name would let a
write slip through uncaptured. Triggers for actions a table no longer captures,
and for tables no longer mapped, are among those dropped.

The output depends only on the mapping (``table``, ``primary_key``, ``capture``, documents),
the cascade triggers handed in (fanout.capture.cascades, from the foreign keys), the version
and the trigger names of the earlier migrations: the same inputs give
the same file, byte for byte. (Migrations up to V004 were written by the per-row
generation of this module, which sent every row with ``lambda_async``; they stay as
they were applied.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fanout.capture.composition_triggers import feeding_triggers
from fanout.capture.migration_scripts import Migration, MigrationError, load_migrations, split_statements
from fanout.capture.names import CHANGE_LOG_TABLE
from fanout.capture.trigger_sql import TRIGGER_PREFIX, capture_trigger, trigger_name
from fanout.model.mapping import ACTIONS, Mappings

DEFAULT_DESCRIPTION = "capture_triggers"
_DESCRIPTION = re.compile(r"\w+")

# The names of triggers an earlier migration created or dropped (plain or backtick-quoted).
_CREATE_TRIGGER = re.compile(
    r"CREATE\s+(?:DEFINER\s*=\s*\S+\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(" + TRIGGER_PREFIX + r"[\w$]+)`?",
    re.IGNORECASE,
)
_DROP_TRIGGER = re.compile(r"DROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?`?(" + TRIGGER_PREFIX + r"[\w$]+)`?", re.IGNORECASE)

CHANGE_LOG_TABLE_SQL = f"""\
CREATE TABLE IF NOT EXISTS {CHANGE_LOG_TABLE} (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    payload JSON NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;"""


def live_triggers(migrations: Iterable[Migration]) -> list[str]:
    """The fanout triggers that exist after ``migrations`` have run, in the order they were created.

    Each file's ``CREATE TRIGGER`` and ``DROP TRIGGER`` statements are replayed in
    version order, statement by statement.
    """
    live: dict[str, None] = {}
    for migration in sorted(migrations, key=lambda m: m.version):
        try:
            statements = split_statements(migration.sql)
        except MigrationError as exc:
            raise MigrationError(f"{migration.path.name}: {exc}") from None
        for statement in statements:  # each starts at its first keyword (comments are not kept)
            if (created := _CREATE_TRIGGER.match(statement)) is not None:
                live[created.group(1)] = None
            elif (dropped := _DROP_TRIGGER.match(statement)) is not None:
                live.pop(dropped.group(1), None)
    return list(live)


# (table, action, trigger name, CREATE TRIGGER statement, summary lines or ""): triggers another generator wrote
GeneratedTrigger = tuple[str, str, str, str, str]


def capture_migration(
    mappings: Mappings,
    version: int,
    previous_triggers: Sequence[str] = (),
    cascades: Sequence[GeneratedTrigger] = (),
) -> str:
    """The whole migration: change-log table, new triggers, then the previous triggers dropped.

    ``cascades``: the foreign-key cascade triggers (fanout.capture.cascades), created after the others."""
    tables = [mappings.tables[name] for name in sorted(mappings.tables)]
    created: list[str] = []
    summary: list[str] = []
    blocks: list[str] = []
    for mapping in tables:
        actions = [a for a in ACTIONS if a in mapping.capture]
        summary.append(f"--   {mapping.table}: {', '.join(actions)} (key: {', '.join(mapping.key_columns)})")
        for action in actions:
            name = trigger_name(mapping.table, action, version)
            created.append(name)
            # Only a re-run after a partial failure finds it; the file is idempotent that way.
            blocks.append(f"DROP TRIGGER IF EXISTS {name};\n\n{capture_trigger(mapping, action, version)}")
    for _table, _action, name, sql, described in feeding_triggers(mappings, version):
        if described:
            summary.append(described)
        created.append(name)
        blocks.append(f"DROP TRIGGER IF EXISTS {name};\n\n{sql}")
    if cascades:
        summary.append("-- Foreign-key cascades, logged by a BEFORE trigger on the referenced table:")
    for _table, _action, name, sql, described in cascades:
        summary.append(described)
        created.append(name)
        blocks.append(f"DROP TRIGGER IF EXISTS {name};\n\n{sql}")
    stale = [name for name in previous_triggers if name not in created]
    header = [
        f"-- V{version:03d}: capture triggers for the tables in the mapping: change log, a ring at most once per",
        "-- statement and once a second per schema.",
        "-- Generated by `fanout migrations generate`; do not edit. To change what is captured, change",
        "-- the mapping (layers/common/fanout/tables.json) and generate a new migration.",
        "--",
        "-- Tables and the actions they capture:",
        *summary,
        "--",
        "-- Each trigger appends {v, action, table, pk, old_pk (updates only), ts} to",
        f"-- {CHANGE_LOG_TABLE} (InnoDB: in the application's transaction, gone on ROLLBACK), unless",
        "-- the session has SET @fanout_disable = 1 (bulk jobs; the backfill replicates what they",
        "-- change). The statement's first row then rings the parser with lambda_async, unless a",
        "-- session rang in this second or a drainer holds the drain lock (a drainer keeps it at",
        "-- least a second after the log is empty, so it takes what the throttle held back); a",
        "-- failing ring never fails the statement (the sweeper drains what no ring announced).",
        "-- New triggers are created before the earlier ones are dropped, so no write goes",
        "-- uncaptured in between.",
        "-- ${parser_function_arn} is filled in by the migration runner. See docs/architecture.md.",
    ]
    parts = ["\n".join(header), CHANGE_LOG_TABLE_SQL, *blocks]
    if stale:
        parts.append(
            "-- The triggers earlier migrations created, now replaced by the ones above (or no longer captured).\n"
            + "\n".join(f"DROP TRIGGER IF EXISTS {name};" for name in stale)
        )
    return "\n\n".join(parts) + "\n"


def migration_file_name(version: int, description: str = DEFAULT_DESCRIPTION) -> str:
    if _DESCRIPTION.fullmatch(description) is None:
        raise ValueError(f"description {description!r} may only contain letters, digits and _")
    return f"V{version:03d}__{description}.sql"


def write_capture_migration(
    directory: str | Path,
    mappings: Mappings,
    *,
    description: str = DEFAULT_DESCRIPTION,
    version: int | None = None,
    cascades: Callable[[int], Sequence[GeneratedTrigger]] = lambda _version: (),
) -> Path:
    """Write the next migration (``version``, default: one above the highest) into ``directory``.

    Refuses to overwrite a file or to reuse a version: an applied migration must never change.
    """
    directory = Path(directory)
    existing = load_migrations(directory)
    highest = max((m.version for m in existing), default=0)
    version = highest + 1 if version is None else version
    if version < 1:
        raise MigrationError(f"version {version} must be at least 1")
    if any(m.version == version for m in existing):
        raise MigrationError(f"version {version} already exists in {directory}; migrations are never rewritten")
    if version < highest:
        raise MigrationError(f"version {version} is below the highest existing version {highest}")
    earlier = [m for m in existing if m.version < version]
    path = directory / migration_file_name(version, description)
    sql = capture_migration(mappings, version, live_triggers(earlier), cascades(version))
    with path.open("x", encoding="utf-8", newline="\n") as out:
        out.write(sql)
    return path
