"""The fallback sweeper: hands the changes the per-row triggers could not send to the parser.

When ``lambda_async`` failed inside one of the per-row capture triggers (V003, V004), the
trigger wrote the payload it could not send to ``fanout_fallback_outbox`` instead (see
:mod:`fanout.capture.triggers`). The change-log triggers (V006 on) park nothing: a failed
ring (ERROR 1873, taken by the trigger's handler) leaves the change in the change log,
which the sweeper's ring drains (:func:`fanout.capture.change_log.ring_if_waiting`).
The sweeper — a scheduled Lambda function and ``fanout sweep`` — drains that table:
each row's payload goes to the row's function (the parser) with an asynchronous
invoke, exactly as ``lambda_async`` would have sent it, and the row is deleted only
once Lambda has accepted the invoke (202). A crash between the two sends the row
again on the next run: delivery is at least once, as it is from Aurora, and every
write downstream is versioned, so a duplicate is harmless.

* Rows are taken oldest first, those that already failed last (``ORDER BY
  sweep_attempts, id``), so one row that keeps failing cannot starve the rest.
* A payload Lambda refuses for what it is (``InvalidRequestContentException``,
  ``RequestTooLargeException``) can never succeed: it is recorded in the
  dead-letter queue with the reason and deleted — never retried forever, never lost.
* Any other failure (Lambda unreachable, throttled, the function missing, access
  denied) leaves the row where it is, with ``sweep_attempts`` and ``sweep_error``
  updated, for the next run. A few failures in a row end the run: the endpoint
  is down, and waiting out timeouts row after row would only burn the run.
* Runs are serialised by a user-level lock per schema, taken without waiting: a
  run that finds another one under way returns at once (``busy``).

The sweeper reads and deletes its own rows only, with plain (non-locking) reads
and single-row deletes by primary key, so it never holds a lock an application
transaction could wait for.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pymysql
import pymysql.connections

from fanout.capture.names import FALLBACK_TABLE
from fanout.config import ConfigError
from fanout.observability import log
from fanout.pipeline.rejects import Reject
from fanout.source import locks

LOCK_NAME_PREFIX = "fanout_fallback_sweeper"
DEFAULT_MAX_ROWS = 500
DEFAULT_MAX_CONSECUTIVE_FAILURES = 3
# Errors that say the payload itself is unacceptable: retrying the same bytes cannot help.
PAYLOAD_REFUSED = frozenset({"InvalidRequestContentException", "RequestTooLargeException"})
_MAX_ERROR_CHARS = 2000
_ER_NO_SUCH_TABLE = 1146


@dataclass(frozen=True)
class SweeperSettings:
    """What the sweeper needs beyond the database: where refused payloads are recorded, and a batch bound."""

    dead_letter_queue_url: str
    max_rows: int = DEFAULT_MAX_ROWS
    parser_function: str = ""  # rung when rows wait in the change log (fanout.capture.change_log.ring_if_waiting)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SweeperSettings:
        env = os.environ if env is None else env
        queue = env.get("DEAD_LETTER_QUEUE_URL", "").strip()
        if not queue:
            raise ConfigError("environment variable DEAD_LETTER_QUEUE_URL is required but not set")
        raw = env.get("SWEEP_MAX_ROWS", "").strip()
        try:
            max_rows = int(raw) if raw else DEFAULT_MAX_ROWS
        except ValueError:
            raise ConfigError(f"environment variable SWEEP_MAX_ROWS must be an integer, got {raw!r}") from None
        if max_rows < 1:
            raise ConfigError(f"environment variable SWEEP_MAX_ROWS must be >= 1, got {max_rows}")
        return cls(
            dead_letter_queue_url=queue, max_rows=max_rows, parser_function=env.get("PARSER_FUNCTION_NAME", "").strip()
        )


@dataclass
class SweepReport:
    """What one run did."""

    delivered: int = 0  # invoked (202) and deleted
    rejected: int = 0  # refused by Lambda for their payload: recorded in the DLQ and deleted
    failed: int = 0  # invoke failed; the row stays for the next run
    remaining: int = 0  # rows in the table when the run ended
    busy: bool = False  # another run held the lock; this one did nothing
    stopped: str = ""  # why the run ended before the table was empty, if it did

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FallbackStatus:
    """What waits in the fallback table."""

    waiting: int
    oldest: datetime | None
    failing: int  # rows the sweeper has tried and failed to deliver
    errors: Sequence[tuple[int, int, str]]  # (id, attempts, last error) of the most-tried rows


def lock_name(schema: str) -> str:
    return locks.lock_name(LOCK_NAME_PREFIX, schema)


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _count(conn: pymysql.connections.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {FALLBACK_TABLE}")  # noqa: S608 - a constant name
        row = cur.fetchone()
    return int(row[0]) if row else 0


def _parsed(payload: str) -> Any:
    with suppress(ValueError):
        return json.loads(payload)
    return payload


def sweep(
    conn: pymysql.connections.Connection,
    lambda_client: Any,
    reject: Reject,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    time_left: Callable[[], bool] = lambda: True,
) -> SweepReport:
    """One run over the fallback table of ``conn``'s schema (``conn`` in autocommit mode).

    ``time_left`` is asked before each invoke; when it says no, the run ends and
    the rest waits for the next one.
    """
    report = SweepReport()
    schema = locks.current_schema(conn)
    if schema is None:
        raise ConfigError("the database connection has no current schema to sweep")
    name = lock_name(schema)
    if not locks.try_lock(conn, name):
        report.busy = True
        log(logging.INFO, "fallback sweep skipped: another sweep is running", lock=name)
        return report
    try:
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT id, function_arn, payload FROM {FALLBACK_TABLE}"  # noqa: S608 - a constant name
                    " ORDER BY sweep_attempts, id LIMIT %s",
                    (max_rows,),
                )
                rows: Sequence[tuple[Any, ...]] = cur.fetchall()
        except pymysql.err.ProgrammingError as exc:
            if exc.args and exc.args[0] == _ER_NO_SUCH_TABLE:  # the migration that creates it has not run yet
                report.stopped = f"{FALLBACK_TABLE} does not exist (no migration with a fallback applied yet)"
                log(logging.INFO, "fallback sweep: nothing to do", reason=report.stopped)
                return report
            raise
        consecutive_failures = 0
        for row_id, function_arn, payload in rows:
            if not time_left():
                report.stopped = "out of time"
                break
            outcome = _deliver(conn, lambda_client, reject, int(row_id), str(function_arn), str(payload))
            if outcome == "delivered":
                report.delivered += 1
                consecutive_failures = 0
            elif outcome == "rejected":
                report.rejected += 1
                consecutive_failures = 0
            else:
                report.failed += 1
                consecutive_failures += 1
                if consecutive_failures >= max_consecutive_failures:
                    report.stopped = f"{consecutive_failures} invokes failed in a row; the rest waits for the next run"
                    break
        report.remaining = _count(conn)
        if report.remaining and not report.stopped and len(rows) >= max_rows:
            report.stopped = f"the run's bound of {max_rows} rows was reached"
    finally:
        with suppress(pymysql.err.Error):
            locks.release_lock(conn, name)
    level = logging.WARNING if report.failed or report.rejected else logging.INFO
    log(level, "fallback sweep finished", **report.as_dict())
    return report


def _deliver(
    conn: pymysql.connections.Connection,
    lambda_client: Any,
    reject: Reject,
    row_id: int,
    function_arn: str,
    payload: str,
) -> str:
    """Invoke for one row; ``"delivered"``, ``"rejected"`` or ``"failed"``. Database errors propagate."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = lambda_client.invoke(
            FunctionName=function_arn, InvocationType="Event", Payload=payload.encode("utf-8")
        )
        status = response.get("StatusCode")
        if status != 202:
            raise RuntimeError(f"async invoke of {function_arn} answered {status}, expected 202")
    except ClientError as exc:
        code = _error_code(exc)
        if code in PAYLOAD_REFUSED:
            reason = f"fallback row {row_id}: Lambda refused the payload ({code}): {exc}"
            reject(reason, _parsed(payload), f"fallback:{row_id}")
            _delete(conn, row_id)
            log(logging.WARNING, "fallback row refused by Lambda; recorded in the DLQ", row=row_id, code=code)
            return "rejected"
        _record_failure(conn, row_id, exc)
        return "failed"
    except (BotoCoreError, RuntimeError) as exc:
        _record_failure(conn, row_id, exc)
        return "failed"
    _delete(conn, row_id)
    return "delivered"


def _delete(conn: pymysql.connections.Connection, row_id: int) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {FALLBACK_TABLE} WHERE id = %s", (row_id,))  # noqa: S608 - a constant name


def _record_failure(conn: pymysql.connections.Connection, row_id: int, exc: BaseException) -> None:
    error = _error_text(exc)
    log(logging.WARNING, "fallback row not delivered; kept for the next run", row=row_id, error=error)
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {FALLBACK_TABLE} SET sweep_attempts = sweep_attempts + 1, sweep_error = %s"  # noqa: S608
            " WHERE id = %s",
            (error, row_id),
        )


def fallback_status(conn: pymysql.connections.Connection, *, error_rows: int = 5) -> FallbackStatus:
    """How many changes wait in the fallback table, since when, and why the most-tried ones failed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), MIN(created_at), COALESCE(SUM(sweep_attempts > 0), 0)"  # noqa: S608 - a constant name
            f" FROM {FALLBACK_TABLE}"
        )
        row = cur.fetchone()
        waiting, oldest, failing = (int(row[0]), row[1], int(row[2])) if row else (0, None, 0)
        cur.execute(
            f"SELECT id, sweep_attempts, sweep_error FROM {FALLBACK_TABLE}"  # noqa: S608 - a constant name
            " WHERE sweep_attempts > 0 ORDER BY sweep_attempts DESC, id LIMIT %s",
            (error_rows,),
        )
        errors = [(int(i), int(a), str(e or "")) for i, a, e in cur.fetchall()]
    return FallbackStatus(waiting=waiting, oldest=oldest, failing=failing, errors=errors)
