"""Row locks as MySQL 8.0 shows them to another session (performance_schema.data_locks and data_lock_waits).

A test that proves a read waits for a writer, or holds nothing while it waits, asks the server rather than
the clock: which session waits for which table's row, and which row locks a session holds.
"""

from __future__ import annotations

import time
from typing import Any

_WAITS = """
SELECT l.OBJECT_NAME, l.LOCK_MODE
FROM performance_schema.data_lock_waits w
JOIN performance_schema.data_locks l ON l.ENGINE_LOCK_ID = w.REQUESTING_ENGINE_LOCK_ID
JOIN performance_schema.threads t ON t.THREAD_ID = w.REQUESTING_THREAD_ID
WHERE t.PROCESSLIST_ID = %s
"""

_HELD = """
SELECT l.OBJECT_NAME, l.LOCK_MODE
FROM performance_schema.data_locks l
JOIN performance_schema.threads t ON t.THREAD_ID = l.THREAD_ID
WHERE t.PROCESSLIST_ID = %s AND l.LOCK_TYPE = 'RECORD' AND l.LOCK_STATUS = 'GRANTED'
"""

# How long a test waits for a session to be seen waiting before it fails (a bound, never a measurement).
SEEN_WITHIN_SECONDS = 30.0


def lock_waits(watcher: Any, session: int) -> list[tuple[str, str]]:
    """(table, lock mode) of each row lock the connection ``session`` (its thread_id()) is waiting for now."""
    with watcher.cursor() as cur:
        cur.execute(_WAITS, (session,))
        return [(str(table), str(mode)) for table, mode in cur.fetchall()]


def row_locks_held(watcher: Any, session: int) -> list[tuple[str, str]]:
    """(table, lock mode) of each row lock the connection ``session`` holds now."""
    with watcher.cursor() as cur:
        cur.execute(_HELD, (session,))
        return [(str(table), str(mode)) for table, mode in cur.fetchall()]


def seen_waiting(watcher: Any, session: int, alive: Any = None) -> list[tuple[str, str]]:
    """The row locks ``session`` waits for, once it is seen waiting; AssertionError if it is not within
    :data:`SEEN_WITHIN_SECONDS`, or as soon as ``alive()`` (the waiting thread, say) says it has ended."""
    deadline = time.monotonic() + SEEN_WITHIN_SECONDS
    while time.monotonic() < deadline:
        found = lock_waits(watcher, session)
        if found:
            return found
        if alive is not None and not alive():
            raise AssertionError(f"session {session} ended without waiting for a row lock")
        time.sleep(0.01)
    raise AssertionError(f"session {session} was not seen waiting for a row lock within {SEEN_WITHIN_SECONDS:.0f}s")
