"""The names the triggers, the drainer and the sweeper share: the change log, the drain lock, the ring's format
and its interval.

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
# The triggers of a schema ring at most once per this many seconds of the clock, whatever the number of sessions
# (each interval has one ring token, a user-level lock the ringing session takes), and every drainer that holds the
# drain lock keeps it at least this long after it has seen the log empty (the drainer's minimum linger). Together
# they make the throttle safe: a statement held back wrote its row within the interval its ring started in, before
# the drainer that ring started (or the one holding the lock) lets go (docs/architecture.md, "The ring throttle").
RING_INTERVAL_SECONDS = 1.0
# The ring token of an interval: ``fanout_ring:<interval number>:<MD5 of the schema>`` (computed by the trigger).
RING_TOKEN_PREFIX = "fanout_ring"


def drain_lock_name(schema: str) -> str:
    """The drain lock of ``schema``."""
    return lock_name(DRAIN_LOCK, schema)


def sweep_lock_name(schema: str) -> str:
    """The sweep lock of ``schema``."""
    return lock_name(SWEEP_LOCK, schema)
