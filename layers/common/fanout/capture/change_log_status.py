"""What waits in the change log: its depth and its oldest row's age, read without locking anything.

The sweeper publishes them as metrics (:mod:`fanout.capture.sweep`), for the dashboard and the change-log alarm;
``fanout status`` and ``fanout sweep --status`` show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pymysql
import pymysql.connections

from fanout.capture.names import CHANGE_LOG_TABLE

_ER_NO_SUCH_TABLE = 1146


@dataclass(frozen=True)
class ChangeLogStatus:
    """What waits in the change log."""

    depth: int
    oldest: datetime | None
    oldest_age_seconds: float | None


def change_log_status(conn: pymysql.connections.Connection) -> ChangeLogStatus | None:
    """How many changes wait in the log, and since when (a plain read: it locks nothing); None before V006."""
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT COUNT(*), MIN(created_at), TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(6))"  # noqa: S608
                f" FROM {CHANGE_LOG_TABLE}"
            )
            row = cur.fetchone()
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == _ER_NO_SUCH_TABLE:
            return None
        raise
    if row is None:
        return ChangeLogStatus(0, None, None)
    age = None if row[2] is None else int(row[2]) / 1_000_000
    return ChangeLogStatus(depth=int(row[0]), oldest=row[1], oldest_age_seconds=age)
