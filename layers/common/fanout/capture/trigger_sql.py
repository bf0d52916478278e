"""The SQL of one capture trigger: its name, its payload's ``JSON_OBJECT`` lines, the change-log insert and the ring.

The building blocks every generated trigger shares (fanout.capture.triggers writes the migration from them,
fanout.capture.composition_triggers the triggers of tables feeding composed documents, fanout.capture.cascades
the foreign-key cascade triggers). Kept apart from the migration writer so that those modules import these
blocks, and the writer imports them, with no import going back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fanout.capture.names import (
    CHANGE_LOG_TABLE,
    DRAIN_LOCK,
    RING,
    RING_FORMAT_VERSION,
    RING_INTERVAL_SECONDS,
    RING_TOKEN_PREFIX,
)
from fanout.model.mapping import ACTIONS, TableMapping
from fanout.source.locks import MAX_LOCK_NAME
from fanout.source.sql import quote_identifier

TRIGGER_PREFIX = "fanout_"
KILL_SWITCH = "@fanout_disable"
STATEMENT_AT = "@fanout_statement_at"  # the NOW(6) of the last statement that considered ringing, per session
RING_TOKEN = "@fanout_ring_token"  # the name of the ring token this session holds: the second it last rang in
PARSER_ARN_PLACEHOLDER = "${parser_function_arn}"
_MAX_IDENTIFIER = 64  # MySQL's limit for trigger names
_INDENT = "    "
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
    """The ring, at ``depth`` indents, each line ending in a newline: for the statement's first row only
    (``@fanout_statement_at``), only when no drainer is at work, and only by the first statement of any session
    of the schema in this second of the clock: it takes the second's ring token (a user-level lock named by the
    second, :data:`RING_TOKEN_PREFIX`) with ``GET_LOCK(name, 0)``, which never waits, and keeps it
    (``@fanout_ring_token``) until it rings again; a failed ring gives the token back. A failure is only noted.

    The second is read *before* the drain lock is looked at: the throttle's safety argument
    (fanout.capture.triggers) needs every drainer holding the lock after a ring to have taken it after the start
    of the ring's second."""
    i1, i2, i3, i4, i5, i6 = (_INDENT * (depth + n) for n in range(6))
    arn = f"'{PARSER_ARN_PLACEHOLDER}'"
    # The token names the interval of the clock and the schema, as its MD5 so that no two schemas share one,
    # however long their names (55 characters in all).
    interval = f"{RING_INTERVAL_SECONDS:g}"
    return (
        f"{i1}IF NOT ({STATEMENT_AT} <=> CAST(NOW(6) AS CHAR)) THEN\n"
        f"{i2}SET {STATEMENT_AT} = CAST(NOW(6) AS CHAR);\n"
        f"{i2}BEGIN\n"
        f"{i3}DECLARE fanout_token VARCHAR(64) DEFAULT CONCAT(\n"
        f"{i4}'{RING_TOKEN_PREFIX}:', FLOOR(UNIX_TIMESTAMP(SYSDATE(6)) / {interval}), ':', MD5(DATABASE())\n"
        f"{i3});\n"
        f"{i3}DECLARE fanout_ring_failed BOOLEAN DEFAULT FALSE;\n"
        # A ring that fails only leaves the row for the next drainer or the sweeper, and gives the second's token
        # back: it started no drainer.
        f"{i3}DECLARE CONTINUE HANDLER FOR SQLEXCEPTION\n"
        f"{i3}BEGIN\n"
        f"{i4}GET DIAGNOSTICS CONDITION 1 @fanout_ring_error = MESSAGE_TEXT;\n"
        f"{i4}SET fanout_ring_failed = TRUE;\n"
        f"{i3}END;\n"
        # Nested, not AND: the token is taken only once the drain lock was seen free (the order is the argument).
        f"{i3}IF\n"
        f"{i4}NOT ({RING_TOKEN} <=> fanout_token)\n"
        f"{i4}AND IS_FREE_LOCK({_DRAIN_LOCK_SQL}) = 1\n"
        f"{i3}THEN\n"
        f"{i4}IF GET_LOCK(fanout_token, 0) = 1 THEN\n"
        # The token of the second it rang in before, if any (a NULL name is an error, not a no-op).
        f"{i5}IF {RING_TOKEN} IS NOT NULL THEN\n"
        f"{i6}DO RELEASE_LOCK({RING_TOKEN});\n"
        f"{i5}END IF;\n"
        f"{i5}SET {RING_TOKEN} = fanout_token;\n"
        f"{i5}SELECT lambda_async({arn}, JSON_OBJECT(\n"
        f"{i6}'v', {RING_FORMAT_VERSION}, 'ring', '{RING}', 'table', '{table}',\n"
        f"{i6}'ts', UNIX_TIMESTAMP(SYSDATE(6))\n"
        f"{i5})) INTO @fanout_invoke_result;\n"
        f"{i5}IF fanout_ring_failed THEN\n"
        f"{i6}DO RELEASE_LOCK(fanout_token);\n"
        f"{i6}SET {RING_TOKEN} = NULL;\n"
        f"{i5}END IF;\n"
        f"{i4}END IF;\n"
        f"{i3}END IF;\n"
        f"{i2}END;\n"
        f"{i1}END IF;\n"
    )
