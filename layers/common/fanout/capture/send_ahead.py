"""The drainer's send ahead: a claimed batch is sent on a thread of its own while the next one is claimed and parsed.

Through the deployed stack, sending a drained batch to the fetch queue (one SendMessageBatch) was half of the
drainer's hand-off, the drainer idle while it waited (bench/results/end_to_end.md). With a second connection the
drainer holds two batches: batch N's rows stay locked by the open transaction of one connection while its changes
are on their way to SQS; the other connection claims batch N+1 (``SKIP LOCKED`` passes over N's rows) and the
drainer parses it; only then does it wait for N's send. The guarantees of a sequential hand-off stay:

- **A row is deleted only after its change was accepted**: :meth:`SendAhead.landed` returns a batch only once its
  send returned; the caller deletes its rows and commits after that (fanout.capture.change_log).
- **A failed send leaves its rows**: :meth:`SendAhead.landed` rolls the batch's transaction back and raises; the
  caller rolls back the batch it holds besides, so both stay for the next drain.
- **Nothing lost, nothing handed twice beyond at-least-once**: a batch abandoned after a failure elsewhere
  (:meth:`SendAhead.abandon`) is rolled back even when its send went through, so its changes may be handed again,
  which the fetcher's re-read and version gate absorb, as for a drainer killed before its DELETE.

One batch at most is in flight, and the connections are used by the drainer's thread only: the thread sends, it
never touches the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

import pymysql
import pymysql.connections

from fanout.model.change import Change


def timed_send(send: Callable[[Sequence[Change]], None], changes: Sequence[Change]) -> float:
    """Send a drained batch's changes (none: no request) and return how long it took: the one timing of a send,
    on this module's thread or waited for by the drainer (``send_s`` in the drain line)."""
    started = time.monotonic()
    if changes:
        send(changes)
    return time.monotonic() - started


@dataclass
class InFlight:
    """A claimed batch whose changes are being sent: its rows stay locked by ``conn``'s open transaction."""

    conn: pymysql.connections.Connection
    row_ids: list[int]
    changes: list[Change]
    rejected: int  # its log rows that were no valid change (recorded already; deleted with the batch)
    started: float  # time.monotonic() when its hand-off began
    sending: Future[float]  # the send; its result is how long it took


class SendAhead:
    """Sends one claimed batch at a time on a thread of its own (``send``: the fetch queue's, raising on refusal)."""

    def __init__(self, send: Callable[[Sequence[Change]], None]) -> None:
        self._send = send
        self._pool: ThreadPoolExecutor | None = None  # its thread started on the first batch
        self.in_flight: InFlight | None = None

    def start(
        self, conn: pymysql.connections.Connection, row_ids: list[int], changes: list[Change], rejected: int,
        started: float,
    ) -> None:  # fmt: skip
        """Send ``changes`` while ``conn``'s transaction holds their rows; the previous batch must have landed."""
        if self.in_flight is not None:
            raise RuntimeError("a batch is still in flight: wait for it to land before sending the next")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanout-send-ahead")
        sending = self._pool.submit(timed_send, self._send, changes)
        self.in_flight = InFlight(conn, row_ids, changes, rejected, started, sending)

    def landed(self) -> tuple[InFlight, float] | None:
        """Wait for the batch in flight: it and how long its send took once every change was accepted (its rows are
        the caller's to delete and commit), None when nothing is in flight. A failed send rolls its transaction
        back (the rows stay) and is raised."""
        flight = self.in_flight
        if flight is None:
            return None
        self.in_flight = None
        try:
            took = flight.sending.result()
        except BaseException:
            with suppress(pymysql.err.Error):  # a lost connection has rolled back already
                flight.conn.rollback()
            raise
        return flight, took

    def abandon(self) -> None:
        """After a failure elsewhere: wait for the send in flight (a thread cannot be stopped midway) and roll its
        transaction back, so its rows stay for the next drain."""
        flight = self.in_flight
        if flight is None:
            return
        self.in_flight = None
        with suppress(BaseException):
            flight.sending.result()
        with suppress(pymysql.err.Error):
            flight.conn.rollback()

    def close(self) -> None:
        """Abandon what is in flight (nothing after a drain that ended well) and stop the thread."""
        self.abandon()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
