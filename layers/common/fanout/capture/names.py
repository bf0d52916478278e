"""The names the triggers, the drainer and the sweeper share: tables, the drain lock, the ring's format.

Kept apart from the trigger generator so that the drainer and the sweeper (which run
in the Lambda functions) import a few constants, not the SQL generator and the
migration scripts behind it.
"""

from __future__ import annotations

from fanout.source.locks import lock_name

CHANGE_LOG_TABLE = "fanout_change_log"
# The per-row generation's table for payloads lambda_async could not send; still swept until empty.
FALLBACK_TABLE = "fanout_fallback_outbox"
# The user-level lock a working drainer holds; the triggers ring only while it is free.
DRAIN_LOCK = "fanout_drain"
# A ring is {"v": 2, "ring": "change_log", "table", "ts"}; a per-row payload is format version 1.
RING_FORMAT_VERSION = 2
RING = "change_log"


def drain_lock_name(schema: str) -> str:
    """The drain lock of ``schema``."""
    return lock_name(DRAIN_LOCK, schema)
