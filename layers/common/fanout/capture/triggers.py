"""Capture-trigger SQL, generated from the table mapping (``fanout migrations generate``); the migration file
that puts it together with the feeding and cascade triggers is written by :mod:`fanout.capture.trigger_migration`.

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
from collections.abc import Sequence

from fanout.capture.names import CHANGE_LOG_TABLE, DRAIN_LOCK, RING, RING_FORMAT_VERSION
from fanout.model.mapping import ACTIONS, TableMapping
from fanout.source.locks import MAX_LOCK_NAME
from fanout.source.sql import quote_identifier

TRIGGER_PREFIX = "fanout_"
KILL_SWITCH = "@fanout_disable"
RUNG_AT = "@fanout_rung_at"  # the NOW(6) of the last statement that considered ringing, per session
PARSER_ARN_PLACEHOLDER = "${parser_function_arn}"
_MAX_IDENTIFIER = 64  # MySQL's limit for trigger names
_INDENT = "    "

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
