"""The drainer: hands the committed rows of the change log to the fetcher, then deletes them.

The capture triggers append every change to ``fanout_change_log`` in the
application's transaction and ring the parser at most once per statement and once
per second (``RING_INTERVAL_SECONDS``) per schema, while no drainer holds the drain
lock (:mod:`fanout.capture.triggers`). :func:`drain` is what the rung parser runs,
and the scheduled sweeper when no drainer is at work (:mod:`fanout.capture.sweep`). The design, its
edges and why it is safe are in docs/architecture.md ("Capture through the
change log"); in short:

1. **Claim** committed rows no other drainer holds, in id order, in batches
   (``FOR UPDATE SKIP LOCKED``: a row its writer has not committed is locked, so
   skipped); coalesce them per key; hand them to the fetcher; delete them and
   commit. A failed hand-off rolls back, so the rows stay. Repeat while rows come. With a second
   connection (the parser's) a batch is sent while the next is claimed and parsed, its rows deleted only
   once its send returned (:mod:`fanout.capture.send_ahead`).
2. **Wait out writers** (the lock holder only): the same claim without ``SKIP
   LOCKED`` waits, at most ``wait_seconds``, for the transactions whose rows are
   not committed yet (the ringing one among them).
3. **Linger, release the lock, then look once more**: the holder keeps the lock at
   least ``RING_INTERVAL_SECONDS`` (the parser: ``DEFAULT_IDLE_SECONDS``) after it
   has seen the log empty, looking for new rows; a statement that found the lock
   held wrote its row before it looked, so before the release; the last waiting
   claim finds it. The minimum linger is what makes the triggers' ring throttle
   safe: a statement held back by it wrote its row within the second a ring was
   sent in, after that ring found the lock free, so every holder since took the
   lock within or after that second and keeps it past the row.

**Bounded by the time left** (:mod:`fanout.deadline`): a batch is claimed only while it fits (twice the
slowest hand-off so far); a drain that runs out of time with rows left rings its successor
(``ring_successor``) before it returns, so the drain goes on in a fresh invocation instead of waiting
for the sweeper, and no drainer is killed mid-hand-off.

The drainer's session runs at READ COMMITTED, so its locking reads take record
locks only (no gap locks an application's insert into the log could wait for),
and the only rows it ever locks are log rows, which applications only insert:
it never holds a lock an application transaction could need, waiting or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from typing import Any

import pymysql
import pymysql.connections

from fanout.capture.names import CHANGE_LOG_TABLE, RING_INTERVAL_SECONDS, drain_lock_name
from fanout.capture.send_ahead import InFlight, SendAhead, timed_send
from fanout.deadline import Deadline, TimeLeft
from fanout.model.change import Change, ChangeValidationError, Stage
from fanout.model.mapping import Mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.observability import ChangeMetric, log, metric_table, record, record_accepted
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.pipeline.rejects import Reject
from fanout.redaction import describe_error
from fanout.source.locks import current_schema, is_free_lock, release_lock, try_lock

# A drained batch is one fetch-queue message and one SendMessageBatch up to ~1,400 changes (256 KB), whose time
# through the deployed local stack is mostly the request's, not its size's (bench/results/end_to_end.md)
DEFAULT_BATCH_ROWS = 1000
DEFAULT_WAIT_SECONDS = 1  # a waiting claim's innodb_lock_wait_timeout: how long one wait for a writer lasts
DEFAULT_IDLE_SECONDS = 2.0  # the rung parser: how long it keeps draining an empty log before it ends
IDLE_POLL_SECONDS = 0.05  # how often a lingering drainer looks (the latency a row pays while one lingers)
DEFAULT_MAX_SECONDS = 60.0  # without a deadline, how long a drain may keep waiting for an open writer
MIN_STEP_SECONDS = 2.0  # a batch or a wait is started only with more than this long left
FIRST_BATCH_ROWS = 100  # a drainer's first claim, before it has timed a hand-off (then: what fits, up to batch_rows)
_ER_LOCK_WAIT_TIMEOUT = 1205
_ER_LOCK_DEADLOCK = 1213
_ER_NO_SUCH_TABLE = 1146
OUT_OF_TIME = "out of time; the rest goes to the successor, else the next ring or the sweeper"


@dataclass
class DrainReport:
    """What one drain did."""

    claimed: int = 0  # log rows taken and deleted
    forwarded: int = 0  # changes handed to the fetcher (after coalescing per key)
    rejected: int = 0  # log rows that were no valid change: recorded in the DLQ and deleted
    batches: int = 0
    waits_timed_out: int = 0  # waits for a writer that ended with the writer still open
    held_lock: bool = False  # this drainer held the drain lock (and so waited for writers)
    stopped: str = ""  # why the drain ended with work possibly left, if it did
    successor_rung: bool = False  # out of time with rows left: a fresh drainer was rung to go on
    handoff_s: float = 0.0  # the drainer's time in hand-offs (parse, wait for the send, delete, commit)
    delete_s: float = 0.0  # of which deleting the handed rows and committing
    send_wait_s: float = 0.0  # of which waiting for a send to the fetch queue; the rest: parsing, accepted lines
    send_s: float = 0.0  # the sends' own time (packing and the requests): send_wait_s, plus what overlapped parsing
    sent_ahead: int = 0  # batches sent while the next was claimed and parsed (fanout.capture.send_ahead)

    def as_dict(self) -> dict[str, Any]:
        """The drain line's fields, its times to the millisecond (summed unrounded: a drain of many sub-millisecond
        waits reports their sum, not zero)."""
        return {name: round(value, 3) if isinstance(value, float) else value for name, value in asdict(self).items()}


def changes_of_row(
    row_id: int, payload: Any, mappings: Mappings, reject: Reject, correlation_id: str
) -> list[Change] | None:
    """The changes a claimed log row stands for, or None when it can never be valid: then it is recorded once
    (the reason beside the payload) and deleted with its batch, since retrying it cannot help. Its values are
    never logged: a log line names the field and the reason only."""
    try:
        return parse_trigger_payload(payload, mappings, correlation_id)
    except ChangeValidationError as exc:
        table = metric_table(payload, mappings)
        reject(f"change log row {row_id}: {exc}", payload, f"change-log:{row_id}")
        log(logging.WARNING, "change log row rejected", row=row_id, table=table, field=exc.log_field, reason=exc.reason)
        record(ChangeMetric.REJECTED, table)
        return None


def parse_rows(
    rows: Sequence[tuple[int, Any]], mappings: Mappings, reject: Reject, correlation_id: str
) -> tuple[list[Change], int]:
    """The changes of claimed log rows (id, payload), in order, and how many rows were rejected
    (:func:`changes_of_row`)."""
    changes: list[Change] = []
    rejected = 0
    for row_id, payload in rows:
        found = changes_of_row(row_id, payload, mappings, reject, correlation_id)
        if found is None:
            rejected += 1
        else:
            changes.extend(found)
    return changes, rejected


def drained_changes(
    rows: Sequence[tuple[int, Any]], mappings: Mappings, reject: Reject, correlation_id: str
) -> tuple[list[Change], int]:
    """The changes claimed log rows (id, payload) hand on, coalesced per key and stamped drained, and how many rows
    were rejected (:func:`changes_of_row`)."""
    changes, rejected = parse_rows(rows, mappings, reject, correlation_id)
    drained_us = time.time_ns() // 1000  # a stage of the changes' lag (fanout.pipeline.stage_times)
    return [change.stamped(Stage.DRAINED, drained_us) for change in coalesce(changes)], rejected


def hand_on(
    rows: Sequence[tuple[int, Any]], mappings: Mappings, queue: ChangeQueue, reject: Reject, correlation_id: str
) -> tuple[int, int]:
    """Hand the changes of claimed log rows (id, payload) to the fetch queue, coalesced per key; rows that can
    never be valid are recorded (:func:`changes_of_row`). Raises as ``queue.send`` does. (forwarded, rejected)."""
    merged, rejected = drained_changes(rows, mappings, reject, correlation_id)
    if merged:
        queue.send(merged)
        record_accepted(merged, correlation_id)
    return len(merged), rejected


def coalesce(changes: Sequence[Change]) -> list[Change]:
    """One change per (table, key), in first-seen order, with the earliest change time (for lag).

    The re-read decides what the row is now, so one read serves all of a key's changes.
    """
    merged: dict[tuple[str, tuple[Any, ...], str], Change] = {}
    for change in changes:
        ident = (change.table, change.key, change.via)  # a change via a relation names another table's row
        seen = merged.get(ident)
        if seen is None:
            merged[ident] = change
        elif change.changed_at_us < seen.changed_at_us:
            merged[ident] = replace(seen, changed_at_us=change.changed_at_us)
    return list(merged.values())


# Point access by primary key, never a scan: a DELETE that scans waits on the rows another drainer holds (DELETE
# reads no semi-consistent versions) and deadlocks two drainers (tests/integration/test_change_log.py). The
# optimizer plans `id IN (...)` as a scan when the list covers much of a small table, so the INDEX hint holds it to
# the primary key's point ranges; when it cannot build them at all (range_optimizer_max_mem_size, a few KB a
# chunk), safe-update mode makes the statement fail, rolling the hand-off back, instead of scanning.
DELETE_CHUNK = 100  # claimed ids a DELETE names: 500 rows in 5 statements, not 500 (bench/results/handoff.md)
_DELETE_HINTS = f"/*+ INDEX({CHANGE_LOG_TABLE} PRIMARY) SET_VAR(sql_safe_updates = 1) */"


def delete_statement(ids: int) -> str:
    """The DELETE of ``ids`` claimed log rows by their ids (parameters), planned as primary-key point access."""
    return f"DELETE {_DELETE_HINTS} FROM {CHANGE_LOG_TABLE} WHERE id IN ({', '.join(['%s'] * ids)})"  # noqa: S608


def delete_claimed(conn: pymysql.connections.Connection, ids: Sequence[int]) -> None:
    """Delete claimed log rows (held by this transaction), DELETE_CHUNK a statement."""
    with conn.cursor() as cur:
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk = ids[start : start + DELETE_CHUNK]
            cur.execute(delete_statement(len(chunk)), tuple(chunk))


class _Drainer:
    def __init__(
        self,
        conn: pymysql.connections.Connection,
        mappings: Mappings,
        queue: ChangeQueue,
        reject: Reject,
        correlation_id: str,
        batch_rows: int,
        second: pymysql.connections.Connection | None = None,
    ) -> None:
        self.conn = conn
        self.second = second  # with it, a batch's send overlaps the claim and parse of the next
        self.ahead = SendAhead(queue.send) if second is not None else None
        self.mappings = mappings
        self.queue = queue
        self.reject = reject
        self.correlation_id = correlation_id
        self.batch_rows = batch_rows
        self.report = DrainReport()
        self.seconds_per_row = 0.0  # the slowest hand-off so far, per row
        self.limit = min(batch_rows, FIRST_BATCH_ROWS)  # rows the next claim may take

    def fits(self, deadline: TimeLeft) -> bool:
        """Whether another batch (or wait) fits in the time left, and how many rows it may claim (``limit``):
        as many as the slowest hand-off so far says fit twice over, at most ``batch_rows``. A burst on a loaded
        hand-off (500 rows took 40 s on the local stack) then ends in a smaller batch, not a killed drainer."""
        left = deadline.left() - MIN_STEP_SECONDS
        if left <= 0:
            return False
        if self.seconds_per_row:
            fit = left / (2 * self.seconds_per_row)
            self.limit = self.batch_rows if fit >= self.batch_rows else int(fit)  # fit may be infinite
        return self.limit > 0

    def claim(self, *, wait: bool, conn: pymysql.connections.Connection | None = None) -> list[tuple[int, str]] | None:
        """Open a transaction on ``conn`` (default: the drainer's own) holding the first committed log rows;
        ``None`` if a wait for a writer timed out."""
        conn = conn or self.conn
        sql = f"SELECT id, payload FROM {CHANGE_LOG_TABLE} ORDER BY id LIMIT %s FOR UPDATE"  # noqa: S608
        if not wait:
            sql += " SKIP LOCKED"
        conn.begin()
        try:
            with _rolled_back_on_failure(conn), conn.cursor() as cur:
                cur.execute(sql, (self.limit,))
                rows = [(int(i), str(p)) for i, p in cur.fetchall()]
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in (_ER_LOCK_WAIT_TIMEOUT, _ER_LOCK_DEADLOCK):
                self.report.waits_timed_out += 1
                return None
            raise
        if not rows:
            conn.commit()
        return rows

    def hand_off(self, rows: Sequence[tuple[int, str]]) -> None:
        """Forward the claimed rows' changes, then delete the rows and commit; roll back on any failure."""
        started = time.monotonic()
        with _rolled_back_on_failure(self.conn):
            forwarded, rejected = hand_on(rows, self.mappings, self, self.reject, self.correlation_id)
        ended = self._delete_and_commit(self.conn, [row_id for row_id, _ in rows], started)
        self.handed(len(rows), forwarded, rejected, started, ended)

    def _delete_and_commit(self, conn: pymysql.connections.Connection, row_ids: Sequence[int], since: float) -> float:
        """The end of every hand-off, its send returned: delete the batch's rows and commit ``conn``'s transaction,
        rolled back on failure (the rows stay). Timed into the report: the delete and commit (``delete_s``) and the
        hand-off's part since ``since`` (``handoff_s``); returns when it ended."""
        deleting = time.monotonic()
        with _rolled_back_on_failure(conn):
            delete_claimed(conn, row_ids)
            conn.commit()
        ended = time.monotonic()
        self.report.delete_s += ended - deleting
        self.report.handoff_s += ended - since
        return ended

    def handed(self, rows: int, forwarded: int, rejected: int, started: float, ended: float) -> None:
        """A batch's rows deleted and committed: counted, and its time per row kept for :meth:`fits`."""
        # A batch's time is mostly fixed (a send, a commit), so a small one's says little per row: counted over
        # FIRST_BATCH_ROWS at least. Per row, the few rows a drainer finds while writers trickle in made a 300 ms
        # send 60 ms a row, and every later claim of the drain a few hundred rows while a backlog waited.
        self.seconds_per_row = max(self.seconds_per_row, (ended - started) / max(FIRST_BATCH_ROWS, rows))
        self.report.batches += 1
        self.report.claimed += rows
        self.report.rejected += rejected
        self.report.forwarded += forwarded

    def send(self, changes: Sequence[Change]) -> None:
        """The drainer as the hand-off's queue: ``queue.send``, timed into the report (all of it waited for)."""
        took = timed_send(self.queue.send, changes)
        self.report.send_s += took
        self.report.send_wait_s += took

    def drain_committed(self, deadline: TimeLeft) -> bool:
        """Step 1 until nothing committed is left; False if time ran out first. With a second connection each
        batch's send overlaps the claim and parse of the next (:meth:`hand_off_ahead`); every batch has landed
        (deleted and committed, or rolled back with the error raised) when this returns."""
        if self.ahead is None:
            while True:
                if not self.fits(deadline):
                    return False
                rows = self.claim(wait=False)
                if not rows:
                    return True
                self.hand_off(rows)
        try:
            while True:
                if not self.fits(deadline):
                    self.land()
                    return False
                conn = self.idle_connection()
                rows = self.claim(wait=False, conn=conn)
                if not rows:
                    self.land()
                    return True
                self.hand_off_ahead(conn, rows)
        except BaseException:
            self.ahead.abandon()  # rolled back: its rows stay for the next drain
            raise

    def idle_connection(self) -> pymysql.connections.Connection:
        """The connection whose transaction holds no batch in flight."""
        assert self.ahead is not None and self.second is not None
        flight = self.ahead.in_flight
        return self.second if flight is not None and flight.conn is self.conn else self.conn

    def hand_off_ahead(self, conn: pymysql.connections.Connection, rows: Sequence[tuple[int, str]]) -> None:
        """Parse the rows ``conn`` claimed, wait for the batch in flight, send these at once, then finish the batch
        that landed (:meth:`finish`): the send thread is idle only while a batch is parsed, and the send runs
        while the next batch is claimed and parsed. On any failure ``conn``'s batch is rolled back."""
        assert self.ahead is not None
        started = time.monotonic()
        with _rolled_back_on_failure(conn):
            changes, rejected = drained_changes(rows, self.mappings, self.reject, self.correlation_id)
            landed, _ = self._wait_for_send()
        self.ahead.start(conn, [row_id for row_id, _ in rows], changes, rejected, started)
        self.report.handoff_s += time.monotonic() - started
        if landed is not None:
            self.finish(*landed)  # a failure here: drain_committed abandons the batch just sent (rolled back)

    def land(self) -> None:
        """Wait for the batch in flight and finish it (:meth:`finish`); a failed send is raised with its batch
        rolled back (fanout.capture.send_ahead)."""
        landed, waited = self._wait_for_send()
        self.report.handoff_s += waited
        if landed is not None:
            self.finish(*landed)

    def _wait_for_send(self) -> tuple[tuple[InFlight, float] | None, float]:
        """The batch in flight once its send returned (``SendAhead.landed``), and how long the drainer waited for it
        (timed into ``send_wait_s``)."""
        assert self.ahead is not None
        waiting = time.monotonic()
        landed = self.ahead.landed()
        waited = time.monotonic() - waiting
        self.report.send_wait_s += waited
        return landed, waited

    def finish(self, flight: InFlight, took: float) -> None:
        """A batch whose every change was accepted by the queue: log them, delete its rows and commit."""
        started = time.monotonic()
        with _rolled_back_on_failure(flight.conn):
            if flight.changes:
                record_accepted(flight.changes, self.correlation_id)
        ended = self._delete_and_commit(flight.conn, flight.row_ids, started)
        self.handed(len(flight.row_ids), len(flight.changes), flight.rejected, flight.started, ended)
        self.report.sent_ahead += 1
        self.report.send_s += took


@contextmanager
def _rolled_back_on_failure(conn: pymysql.connections.Connection) -> Iterator[None]:
    """Roll ``conn``'s transaction back when the block raises, and raise on: the rows it claimed stay in the log."""
    try:
        yield
    except BaseException:
        conn.rollback()
        raise


def drain(
    conn: pymysql.connections.Connection,
    mappings: Mappings,
    queue: ChangeQueue,
    reject: Reject,
    *,
    correlation_id: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    wait_seconds: int = DEFAULT_WAIT_SECONDS,
    idle_seconds: float = 0.0,
    deadline: TimeLeft | None = None,
    ring_successor: Callable[[], None] | None = None,
    second: pymysql.connections.Connection | None = None,
) -> DrainReport:
    """Drain the change log of ``conn``'s schema (``conn``: a connection of its own, in autocommit mode).

    ``second``: another connection of its own to the same schema (the parser's); with it each batch's send to
    the fetch queue overlaps the claim and parse of the next (fanout.capture.send_ahead). Without it (the
    sweeper), a batch is sent, deleted and committed before the next is claimed.

    ``idle_seconds``: how long the lock holder keeps the lock once the log is empty,
    looking for new rows (the parser: ``DEFAULT_IDLE_SECONDS``), so that a stream of
    small writes needs few rings; never less than ``RING_INTERVAL_SECONDS``, which the triggers' ring
    throttle relies on (a drain that must let go sooner stops as out of time and rings its successor).
    ``deadline`` is asked before each batch and each wait (default:
    ``DEFAULT_MAX_SECONDS`` from now); a batch starts only while twice the slowest one so far fits. When time
    runs out with rows left, ``ring_successor`` (the parser: an asynchronous invoke of itself) is called
    before the drain returns, unless another drainer holds the lock (it goes on, and rings its own successor),
    so the rest is drained at once by a fresh invocation; without it (or if the ring fails) the rest waits for
    the next ring or the sweeper. Hand-off and database errors propagate
    after the open batches are rolled back (their rows stay).
    """
    if deadline is None:
        deadline = Deadline.after(DEFAULT_MAX_SECONDS)
    schema = _drainer_session(conn, wait_seconds)
    if schema is None:
        raise RuntimeError("the database connection has no current schema to drain")
    if second is not None and _drainer_session(second, wait_seconds) != schema:
        raise RuntimeError(f"the drainer's second connection is not to the schema it drains ({schema})")
    lock = drain_lock_name(schema)
    drainer = _Drainer(conn, mappings, queue, reject, correlation_id, batch_rows, second)
    report = drainer.report
    holding = try_lock(conn, lock)
    report.held_lock = holding
    try:
        try:
            report.stopped = _run(drainer, conn, lock, holding, deadline, idle_seconds)
        finally:
            if drainer.ahead is not None:
                drainer.ahead.close()
            with suppress(pymysql.err.Error):  # a lost connection has released it already
                release_lock(conn, lock)
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == _ER_NO_SUCH_TABLE:  # the migration that creates the log has not run yet
            report.stopped = f"{CHANGE_LOG_TABLE} does not exist (no change-log migration applied yet)"
            return report
        raise
    if report.stopped == OUT_OF_TIME and ring_successor is not None and is_free_lock(conn, lock):
        # no other drainer at work to take the rest (one that is rings its own successor in turn): one chain,
        # not one per drainer a burst started
        report.successor_rung = _ring(ring_successor, correlation_id)
    level = logging.INFO if not report.stopped else logging.WARNING
    if report.claimed or report.stopped:
        log(level, "change log drained", correlation_id=correlation_id, **report.as_dict())
    return report


def _drainer_session(conn: pymysql.connections.Connection, wait_seconds: int) -> str | None:
    """Set a drainer's session (READ COMMITTED: record locks only; a waiting claim's lock wait) and return its
    schema."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (wait_seconds,))
    return current_schema(conn)


def _ring(ring_successor: Callable[[], None], correlation_id: str) -> bool:
    """Ring the successor; a failed ring is logged, not raised: the rows stay and the sweeper takes them."""
    try:
        ring_successor()
    except Exception as exc:  # noqa: BLE001 - the sweeper is the safety net
        log(logging.WARNING, "successor ring failed", correlation_id=correlation_id, error=describe_error(exc))
        return False
    return True


def _linger(drainer: _Drainer, idle_seconds: float, deadline: TimeLeft) -> bool | None:
    """Keep the lock a while with the log empty, looking every ``IDLE_POLL_SECONDS``: True if rows came, False
    once the log stayed empty for ``idle_seconds``, None if time ran out first.

    While the lock is held no statement rings, so a steady stream of small writes is
    drained by one long-lived drainer instead of ringing once per write.
    """
    until = time.monotonic() + idle_seconds
    while time.monotonic() < until:
        if not drainer.fits(deadline):
            return None
        time.sleep(IDLE_POLL_SECONDS)
        rows = drainer.claim(wait=False)
        if rows:
            drainer.hand_off(rows)
            return True
    return False


def _run(
    drainer: _Drainer,
    conn: pymysql.connections.Connection,
    lock: str,
    holding: bool,
    deadline: TimeLeft,
    idle_seconds: float,
) -> str:
    """The drain loop (docs/architecture.md); returns why it stopped early, or ``""``."""
    while True:
        if not drainer.drain_committed(deadline):
            return OUT_OF_TIME
        if not holding:
            # Another drainer holds the lock: it waits out the writers, including the ones behind the rows
            # skipped here (they wrote before its release). Nothing more to do.
            if not try_lock(conn, lock):
                return ""
            holding = drainer.report.held_lock = True
            continue
        if not drainer.fits(deadline):
            return OUT_OF_TIME
        rows = drainer.claim(wait=True)  # step 2: wait for the writers of rows not yet committed
        if rows is None:
            continue  # a writer is still open: take what else was committed meanwhile, then wait again
        if rows:
            drainer.hand_off(rows)
            continue
        # Never less than the ring interval: a statement the triggers' throttle held back wrote its row within
        # that interval of a ring sent while the lock was free, so before any holder since then lets go of it
        # (docs/architecture.md, "The ring throttle").
        came = _linger(drainer, max(idle_seconds, RING_INTERVAL_SECONDS), deadline)
        if came is None:
            return OUT_OF_TIME  # let go early: the successor's ring covers what the linger would have taken
        if came:
            continue  # rows came while idling: their statements did not ring, this drainer takes them
        release_lock(conn, lock)  # step 3: the log is empty; statements ring again from here on
        holding = False
        rows = drainer.claim(wait=True)  # rows whose statements saw the lock held were written before the release
        if rows is None or rows:
            if rows:
                drainer.hand_off(rows)
            if not try_lock(conn, lock):
                return ""  # a newer drainer holds it now and waits out the rest
            holding = True
            continue
        return ""
