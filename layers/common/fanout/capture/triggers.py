"""Capture-trigger SQL, generated from the table mapping (``fanout migrations generate``).

Users never hand-write trigger SQL: for every mapped table and every action it
captures, this module writes an ``AFTER <action>`` trigger that appends the change
(the payload of format version 1, docs/architecture.md) to the change log,
``fanout_change_log``, and *rings* the parser with ``lambda_async`` at most once
per statement — and never while a drainer holds the drain lock. The parser then
drains the log (:mod:`fanout.capture.change_log`). The trigger cannot break the
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
  sweeper. It is sent for the statement's first row only (``@fanout_rung_at``
  holds the statement's ``NOW(6)``, constant within a statement) and only when
  ``IS_FREE_LOCK`` says no drainer is at work: a read of the server's lock table,
  no row lock, no snapshot. The log row is written *before* that check, which is
  what the drainer's last look after releasing the lock relies on.

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

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fanout.capture.migration_scripts import Migration, MigrationError, load_migrations, split_statements
from fanout.capture.names import CHANGE_LOG_TABLE, DRAIN_LOCK, RING, RING_FORMAT_VERSION
from fanout.model.mapping import ACTIONS, Mappings, TableMapping
from fanout.source.locks import MAX_LOCK_NAME
from fanout.source.sql import quote_identifier

TRIGGER_PREFIX = "fanout_"
KILL_SWITCH = "@fanout_disable"
RUNG_AT = "@fanout_rung_at"  # the NOW(6) of the last statement that considered ringing, per session
DEFAULT_DESCRIPTION = "capture_triggers"
PARSER_ARN_PLACEHOLDER = "${parser_function_arn}"
_MAX_IDENTIFIER = 64  # MySQL's limit for trigger names
_DESCRIPTION = re.compile(r"\w+")
_INDENT = "    "

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


# The drain lock's name (fanout.capture.names.drain_lock_name), computed by the trigger for the schema it lives in.
_DRAIN_LOCK_SQL = f"LEFT(CONCAT('{DRAIN_LOCK}:', DATABASE()), {MAX_LOCK_NAME})"


def trigger_name(table: str, action: str, version: int) -> str:
    """``fanout_<table>_after_<action>_v<version>``, shortened with a hash of the table if over 64 characters."""
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {ACTIONS}")
    suffix = f"_after_{action}_v{version:03d}"
    name = f"{TRIGGER_PREFIX}{table}{suffix}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode("utf-8")).hexdigest()[:8]
    room = _MAX_IDENTIFIER - len(TRIGGER_PREFIX) - len(suffix) - len(digest) - 1
    if room < 1:
        raise ValueError(f"version {version} is too large for a trigger name")
    return f"{TRIGGER_PREFIX}{table[:room]}_{digest}{suffix}"


def _key_object(mapping: TableMapping, row: str) -> str:
    """``JSON_OBJECT('id', NEW.`id`)``: the key as an object, in the mapping's key order."""
    pairs = ", ".join(f"'{column}', {row}.{quote_identifier(column)}" for column in mapping.key_columns)
    return f"JSON_OBJECT({pairs})"


def payload_fields(mapping: TableMapping, action: str) -> list[str]:
    """The lines of the payload's JSON_OBJECT, exactly the fields of format version 1."""
    row = "OLD" if action == "delete" else "NEW"
    fields = [
        f"'v', 1, 'action', '{action}', 'table', '{mapping.table}',",
        f"'pk', {_key_object(mapping, row)},",
    ]
    if action == "update":  # the old key, so a primary-key change deletes the old row from the sinks
        fields.append(f"'old_pk', {_key_object(mapping, 'OLD')},")
    fields.append("'ts', UNIX_TIMESTAMP(SYSDATE(6))")
    return fields


def capture_trigger(mapping: TableMapping, action: str, version: int) -> str:
    """The ``CREATE TRIGGER`` statement for one table and action (placeholder not yet filled in)."""
    name = trigger_name(mapping.table, action, version)
    return trigger_sql(name, mapping.table, action, payload_fields(mapping, action))


def trigger_sql(name: str, table: str, action: str, payload_fields: Sequence[str], only_if: str = "") -> str:
    """A capture trigger: the payload's ``JSON_OBJECT`` lines into the change log, then the ring; with
    ``only_if`` (a condition on OLD/NEW), nothing at all unless it holds."""
    i1, i2, i3 = (_INDENT * n for n in range(1, 4))
    payload = f"\n{i3}".join(payload_fields)
    condition = f"COALESCE({KILL_SWITCH}, 0) <> 1" + (f" AND {only_if}" if only_if else "")
    return (
        f"CREATE TRIGGER {name} AFTER {action.upper()} ON {quote_identifier(table)} FOR EACH ROW\n"  # noqa: S608 - validated mapping names
        f"BEGIN\n"
        f"{i1}IF {condition} THEN\n"
        f"{i2}INSERT INTO {CHANGE_LOG_TABLE} (payload) VALUES (JSON_OBJECT(\n"
        f"{i3}{payload}\n"
        f"{i2}));\n"
        f"{ring_sql(table, 2)}"
        f"{i1}END IF;\n"
        f"END;"
    )


def ring_sql(table: str, depth: int) -> str:
    """The ring, at ``depth`` indents, each line ending in a newline: once per statement
    (``@fanout_rung_at``), only when no drainer is at work, and a failure is only noted."""
    i1, i2, i3, i4 = (_INDENT * (depth + n) for n in range(4))
    arn = f"'{PARSER_ARN_PLACEHOLDER}'"
    return (
        f"{i1}IF NOT ({RUNG_AT} <=> CAST(NOW(6) AS CHAR)) THEN\n"
        f"{i2}SET {RUNG_AT} = CAST(NOW(6) AS CHAR);\n"
        f"{i2}BEGIN\n"
        # A ring that fails only leaves the row for the next drainer or the sweeper.
        f"{i3}DECLARE CONTINUE HANDLER FOR SQLEXCEPTION\n"
        f"{i4}GET DIAGNOSTICS CONDITION 1 @fanout_ring_error = MESSAGE_TEXT;\n"
        f"{i3}IF IS_FREE_LOCK({_DRAIN_LOCK_SQL}) = 1 THEN\n"
        f"{i4}SELECT lambda_async({arn}, JSON_OBJECT(\n"
        f"{i4}{_INDENT}'v', {RING_FORMAT_VERSION}, 'ring', '{RING}', 'table', '{table}',\n"
        f"{i4}{_INDENT}'ts', UNIX_TIMESTAMP(SYSDATE(6))\n"
        f"{i4})) INTO @fanout_invoke_result;\n"
        f"{i3}END IF;\n"
        f"{i2}END;\n"
        f"{i1}END IF;\n"
    )


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
    from fanout.capture.composed_triggers import feeding_triggers  # it builds on trigger_sql above

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
        f"-- V{version:03d}: capture triggers for the tables in the mapping: change log, one ring per statement.",
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
        "-- drainer holds the drain lock; a failing ring never fails the statement (the sweeper",
        "-- drains what no ring announced). New triggers are created before the earlier ones are",
        "-- dropped, so no write goes uncaptured in between.",
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
