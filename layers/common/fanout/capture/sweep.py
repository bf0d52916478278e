"""The sweeper's half of capture: when rows wait in the change log, a drain starts now, however many rings are
queued or were lost; one sweep at a time per schema.

The scheduled SweeperFunction (``sweeper_fn/app.py``) and ``fanout sweep`` run :func:`sweep`. The drain it starts
is :func:`fanout.capture.change_log.drain` (the sweeper's own) or the parser's, rung (:mod:`fanout.capture.ring`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.connections

from fanout.capture.change_log import DrainReport
from fanout.capture.change_log_status import ChangeLogStatus, change_log_status
from fanout.capture.names import drain_lock_name, sweep_lock_name
from fanout.capture.ring import ring
from fanout.observability import StackMetric, log, record_stack
from fanout.source.locks import current_schema, is_free_lock, release_lock, try_lock


def sweep_once(
    conn: pymysql.connections.Connection,
    lambda_client: Any,
    parser_function: str,
    drain_here: Callable[[], DrainReport] | None = None,
) -> tuple[ChangeLogStatus | None, DrainReport | None]:
    """The sweeper's safety net: when rows wait in the log, a drain starts now, however many rings are queued
    or were lost.

    With ``drain_here`` (the sweeper function: a drain bounded by its own time, ringing a successor when it
    runs out) and no drainer holding the drain lock, the sweep drains itself: a ring is an asynchronous
    invoke, which waits behind every ring queued before it (a burst queues hundreds) and is lost if Lambda
    drops it, so only a drain started here is sure to start within the sweeper's period. While a drainer
    holds the lock, it is at work and takes the waiting rows (it waits out their writers); the sweep rings
    as well, so a second drainer takes the committed ones beside it. Without ``drain_here`` (``fanout
    sweep``) it rings. Published as metrics, the log's depth and its oldest row's age feed the dashboard,
    ``fanout status`` and the change-log alarm.
    """
    status = change_log_status(conn)
    if status is None:
        return None, None
    record_stack(StackMetric.CHANGE_LOG_DEPTH, status.depth)
    record_stack(StackMetric.CHANGE_LOG_AGE, status.oldest_age_seconds or 0.0)
    if not status.depth:
        return status, None
    schema = current_schema(conn)
    if drain_here is not None and schema is not None and is_free_lock(conn, drain_lock_name(schema)):
        log(logging.INFO, "change log waiting, no drainer at work; sweeper drains", depth=status.depth,
            age=status.oldest_age_seconds)  # fmt: skip
        return status, drain_here()
    ring(lambda_client, parser_function)
    log(logging.INFO, "change log waiting; parser rung", depth=status.depth, age=status.oldest_age_seconds)
    return status, None


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: nothing when another sweep held the lock (``busy``), else the log's status."""

    busy: bool
    status: ChangeLogStatus | None  # None: no change log in the schema (before V006), or busy
    drained: DrainReport | None = None  # the sweep's own drain, when it drained (sweep_once)

    def as_dict(self) -> dict[str, Any]:
        waiting = self.status
        return {
            "busy": self.busy,
            "depth": None if waiting is None else waiting.depth,
            "oldest_age_seconds": None if waiting is None else waiting.oldest_age_seconds,
            "drained": None if self.drained is None else self.drained.as_dict(),
        }


def sweep(
    conn: pymysql.connections.Connection,
    lambda_client: Any,
    parser_function: str,
    drain_here: Callable[[], DrainReport] | None = None,
) -> SweepResult:
    """:func:`sweep_once`, one sweep at a time per schema: a sweep that finds another under way (the
    schedule's, an operator's) returns at once, so two sweeps never start a drain for the same rows."""
    schema = current_schema(conn)
    name = sweep_lock_name(schema or "")
    if not try_lock(conn, name):
        return SweepResult(busy=True, status=None)
    try:
        status, drained = sweep_once(conn, lambda_client, parser_function, drain_here)
        return SweepResult(busy=False, status=status, drained=drained)
    finally:
        with suppress(pymysql.err.MySQLError):
            release_lock(conn, name)
