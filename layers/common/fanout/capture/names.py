"""The names the triggers, the drainer and the sweeper share: the change log, the drain lock, the ring's format.

Kept apart from the trigger generator so that the drainer and the sweeper (which run
in the Lambda functions) import a few constants, not the SQL generator and the
migration scripts behind it.
"""

from __future__ import annotations

from fanout.source.locks import lock_name

CHANGE_LOG_TABLE = "fanout_change_log"
# The user-level lock a working drainer holds; the triggers ring only while it is free.
DRAIN_LOCK = "fanout_drain"
# The user-level lock of a sweep (the scheduled SweeperFunction, `fanout sweep`): one rings at a time.
SWEEP_LOCK = "fanout_sweep"
# A ring is {"v": 2, "ring": "change_log", "table", "ts"}; a change-log row's payload is format version 1.
RING_FORMAT_VERSION = 2
RING = "change_log"


def drain_lock_name(schema: str) -> str:
    """The drain lock of ``schema``."""
    return lock_name(DRAIN_LOCK, schema)


def sweep_lock_name(schema: str) -> str:
    """The sweep lock of ``schema``."""
    return lock_name(SWEEP_LOCK, schema)
