"""The change log against MySQL 8.0: what the triggers log and ring, and the drainer's edges.

Each test gets a fresh schema with the demo tables, migrated with db/migrations exactly
as the post-deploy hook does, its triggers ringing a parser ARN of its own. The rings
reach the local lambda_async bridge, which remembers them (the call leaves inside the
statement, so a ROLLBACK does not take it back, as with Aurora's invoke); the drainer
hands its changes to a recording forwarder. Races are driven by real sessions and
observed through InnoDB's own lock waits (performance_schema.data_lock_waits), never by
sleeping.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pymysql
import pytest

import fanout.capture.change_log as change_log_module
from fanout.capture.change_log import (
    DELETE_CHUNK,
    FIRST_BATCH_ROWS,
    OUT_OF_TIME,
    delete_statement,
    drain,
)
from fanout.capture.change_log_status import change_log_status
from fanout.capture.names import CHANGE_LOG_TABLE, drain_lock_name, sweep_lock_name
from fanout.capture.ring import is_ring
from fanout.capture.sweep import sweep, sweep_once
from fanout.config import DatabaseSettings
from fanout.deadline import Deadline
from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.pipeline.fetch_queue import ChangeQueue
from tests.support.fakes import CallbackQueue, FakeLambdaClient
from tests.support.integration import (
    database_clock,
    execute,
    install_capture_triggers,
    lambda_async_bridge,
    lambda_async_calls,
    lock_waits,
    next_second,
    parser_arn,
    rows,
)
from tests.support.waiting import wait_until

WAIT_SECONDS = 30


@pytest.fixture
def source(db_settings: DatabaseSettings) -> Iterator[DatabaseSettings]:
    install_capture_triggers(db_settings)
    yield db_settings
    lambda_async_bridge().reset(parser_arn(db_settings.name))


@pytest.fixture
def sessions(
    source: DatabaseSettings, sessions: Callable[..., pymysql.connections.Connection]
) -> Callable[..., pymysql.connections.Connection]:
    """The shared ``sessions`` (tests/integration/conftest.py: each rolled back and closed after the test), opened
    once the capture triggers are installed."""
    return sessions


class Recorder:
    """A change queue and a reject recorder that keep what they were given (thread-safe)."""

    def __init__(self) -> None:
        self.forwarded: list[Change] = []
        self.rejected: list[tuple[str, Any, str]] = []
        self.calls = 0
        self._lock = threading.Lock()

    def send(self, changes: Sequence[Change]) -> None:
        with self._lock:
            self.calls += 1
            self.forwarded.extend(changes)

    def reject(self, reason: str, payload: Any, correlation_id: str) -> None:
        with self._lock:
            self.rejected.append((reason, payload, correlation_id))

    def keys(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(c.table, c.key_values) for c in self.forwarded]


def log_depth(conn: pymysql.connections.Connection) -> int:
    return int(rows(conn, f"SELECT COUNT(*) FROM {CHANGE_LOG_TABLE}")[0][0])


def insert_posts(conn: pymysql.connections.Connection, count: int, title: str = "t") -> None:
    values = ", ".join(["(%s, 'b', 'a')"] * count)
    execute(conn, f"INSERT INTO posts (title, body, author) VALUES {values}", *([title] * count))


class DrainInThread:
    """``drain`` on its own connection in a thread; ``result()`` joins it and re-raises its error."""

    def __init__(
        self,
        conn: pymysql.connections.Connection,
        recorder: Recorder,
        queue: ChangeQueue | None = None,
        **options: Any,
    ) -> None:
        self.report: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.report = drain(conn, default_mappings(), queue or recorder, recorder.reject, **options)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> Any:
        self.thread.join(WAIT_SECONDS)
        assert not self.thread.is_alive(), "the drainer did not end"
        if self.error is not None:
            raise self.error
        return self.report


# --------------------------------------------------------------------------- the triggers


def test_a_multi_row_statement_logs_every_row_and_rings_once(sessions: Any) -> None:
    app = sessions()

    insert_posts(app, 3)

    assert log_depth(app) == 3
    sent = lambda_async_calls(app)
    assert len(sent) == 1
    assert is_ring(sent[0]) and sent[0]["table"] == "posts"


def test_the_application_keeps_its_own_insert_id(sessions: Any) -> None:
    app = sessions()

    first = execute(app, "INSERT INTO posts (title, body, author) VALUES ('a', 'b', 'c')")
    second = execute(app, "INSERT INTO posts (title, body, author) VALUES ('a', 'b', 'c')")
    execute(app, "UPDATE posts SET title = 'x'")

    assert (first, second) == (1, 2)  # LAST_INSERT_ID is the application's row, not the log's
    assert rows(app, "SELECT LAST_INSERT_ID()")[0][0] == 2
    assert log_depth(app) == 4


def test_a_schema_rings_at_most_once_a_second_whatever_the_sessions_and_once_per_statement(
    sessions: Any, source: Any
) -> None:
    app, other, holder = sessions(), sessions(), sessions()
    # Given a multi-row statement early in a second of the clock: it rang once
    next_second(app)
    insert_posts(app, 3)
    [first] = lambda_async_calls(app)

    # When the same session and another one write again within that second
    insert_posts(app, 1)
    insert_posts(other, 1)
    execute(other, "UPDATE posts SET title = 'x' WHERE id = 1")

    # Then none of them rang (the premise: they were written within the second the ring took its token in)
    assert math.floor(database_clock(app)) == math.floor(first["ts"])
    assert lambda_async_calls(app) == [first]

    # When a new second has begun, the first statement of any session rings, and the next one does not
    next_second(app)
    insert_posts(other, 2)
    insert_posts(app, 1)
    [_, second] = lambda_async_calls(app)
    assert math.floor(second["ts"]) > math.floor(first["ts"])

    # And while a drainer holds the lock, a statement in a new second does not ring either; once the lock is free
    # again the next one does (no token was taken meanwhile)
    execute(holder, "SELECT GET_LOCK(%s, 0)", drain_lock_name(source.name))
    next_second(app)
    insert_posts(app, 1)
    assert len(lambda_async_calls(app)) == 2
    execute(holder, "DO RELEASE_LOCK(%s)", drain_lock_name(source.name))
    insert_posts(other, 1)
    assert len(lambda_async_calls(app)) == 3
    assert log_depth(app) == 11


def test_a_failed_ring_gives_the_second_back_to_the_next_statement(sessions: Any, source: Any) -> None:
    app, other = sessions(), sessions()
    lambda_async_bridge().configure(parser_arn(source.name), fail="Network Connection. Unable to connect (test)")
    next_second(app)
    insert_posts(app, 1)

    # When Lambda is reachable again within the same second
    lambda_async_bridge().configure(parser_arn(source.name), deliver=False)
    insert_posts(other, 1)

    # Then the other session's statement rang: the failed ring started no drainer, so it held back nothing
    assert math.floor(database_clock(app)) == math.floor(lambda_async_calls(app)[0]["ts"])  # the premise
    assert len(lambda_async_calls(app)) == 1 and log_depth(app) == 2


def test_no_ring_while_a_drainer_holds_the_lock_but_the_change_is_logged(sessions: Any, source: Any) -> None:
    app, drainer = sessions(), sessions()
    execute(drainer, "SELECT GET_LOCK(%s, 0)", drain_lock_name(source.name))

    insert_posts(app, 2)
    execute(app, "UPDATE posts SET title = 'y'")

    assert lambda_async_calls(app) == []
    assert log_depth(app) == 4


def test_a_rolled_back_transaction_leaves_nothing_to_drain(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    recorder = Recorder()
    app.begin()
    insert_posts(app, 5)
    app.rollback()

    report = drain(conn, default_mappings(), recorder, recorder.reject)

    assert log_depth(app) == 0
    assert len(lambda_async_calls(app)) == 1  # the ring, like Aurora's invoke, survives the rollback
    assert recorder.forwarded == [] and report.claimed == 0


def test_the_kill_switch_logs_and_rings_nothing(sessions: Any) -> None:
    app = sessions()
    execute(app, "SET @fanout_disable = 1")

    insert_posts(app, 2)

    assert log_depth(app) == 0 and lambda_async_calls(app) == []


def test_a_failing_ring_never_fails_the_statement_and_the_change_stays_logged(sessions: Any, source: Any) -> None:
    app = sessions()
    lambda_async_bridge().configure(parser_arn(source.name), fail="Network Connection. Unable to connect (test)")

    insert_posts(app, 2)

    assert log_depth(app) == 2 and lambda_async_calls(app) == []
    assert rows(app, "SELECT @fanout_ring_error")[0][0] == (
        "Lambda API returned error: Network Connection. Unable to connect (test)"
    )


# --------------------------------------------------------------------------- the drainer


def test_drain_coalesces_per_key_hands_off_and_deletes(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    recorder = Recorder()
    insert_posts(app, 3)
    execute(app, "UPDATE posts SET title = 'z' WHERE id = 2")
    execute(app, "DELETE FROM posts WHERE id = 3")

    report = drain(conn, default_mappings(), recorder, recorder.reject, batch_rows=500)

    assert sorted(recorder.keys()) == [("posts", (1,)), ("posts", (2,)), ("posts", (3,))]
    assert report.claimed == 5 and report.forwarded == 3
    assert log_depth(app) == 0
    assert change_log_status(app).depth == 0


def test_drain_takes_batches_in_id_order(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    recorder = Recorder()
    insert_posts(app, 25)

    report = drain(conn, default_mappings(), recorder, recorder.reject, batch_rows=10)

    assert recorder.calls == 3 and report.batches == 3
    assert [k[1][0] for k in recorder.keys()] == list(range(1, 26))


def test_a_primary_key_change_hands_off_the_new_and_the_old_key(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    insert_posts(app, 1)
    drain(conn, default_mappings(), Recorder(), Recorder().reject)
    recorder = Recorder()

    execute(app, "UPDATE posts SET id = 1001 WHERE id = 1")
    drain(conn, default_mappings(), recorder, recorder.reject)

    assert sorted(recorder.keys()) == [("posts", (1,)), ("posts", (1001,))]


def test_a_log_row_that_is_no_valid_change_is_recorded_once_and_deleted(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    recorder = Recorder()
    payload = json.dumps({"v": 1, "action": "insert", "table": "nope", "pk": {"id": 1}, "ts": 1764240000.1})
    execute(app, f"INSERT INTO {CHANGE_LOG_TABLE} (payload) VALUES (%s)", payload)
    insert_posts(app, 1)

    drain(conn, default_mappings(), recorder, recorder.reject)

    assert len(recorder.rejected) == 1 and "not a mapped table" in recorder.rejected[0][0]
    assert recorder.keys() == [("posts", (1,))]
    assert log_depth(app) == 0


def test_the_drainer_waits_for_the_ringing_transaction_and_never_blocks_other_writers(
    sessions: Any, source: Any
) -> None:
    app, other, observer, conn = sessions(), sessions(), sessions(), sessions()
    recorder = Recorder()
    # Given a writer whose statement rang and whose transaction is still open
    app.begin()
    insert_posts(app, 2, title="held")
    assert len(lambda_async_calls(observer)) == 1

    # When the rung drainer starts, it waits for that writer
    running = DrainInThread(conn, recorder)
    wait_until("the drainer to wait for the open writer", lambda: lock_waits(observer, source.name) > 0, WAIT_SECONDS)
    # Then other sessions write meanwhile without waiting (their lock wait timeout would fail them)
    execute(other, "SET SESSION innodb_lock_wait_timeout = 1")
    insert_posts(other, 1, title="other")
    assert lambda_async_calls(observer)[1:] == []  # no ring: the drainer holds the lock
    # And once the writer commits, the drainer hands off all of it
    app.commit()
    report = running.result()

    assert sorted(recorder.keys()) == [("posts", (1,)), ("posts", (2,)), ("posts", (3,))]
    assert report.held_lock
    assert log_depth(observer) == 0


def test_a_commit_just_as_the_drainer_releases_its_lock_is_still_drained(
    sessions: Any, source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, observer, conn = sessions(), sessions(), sessions()
    recorder = Recorder()
    real_release = change_log_module.release_lock
    written = threading.Event()

    def write_then_release(connection: pymysql.connections.Connection, name: str) -> None:
        # Given a writer whose statement runs in the last instant the drainer holds its lock
        if not written.is_set():
            app.begin()
            insert_posts(app, 1, title="late")
            written.set()
        real_release(connection, name)

    monkeypatch.setattr(change_log_module, "release_lock", write_then_release)

    # When the drainer finds the log empty and releases its lock
    running = DrainInThread(conn, recorder)
    wait_until("the late writer", written.is_set, WAIT_SECONDS)
    # Then that statement did not ring, and the drainer's last look waits for it
    assert lambda_async_calls(observer) == []
    wait_until(
        "the drainer's last look to wait for the writer", lambda: lock_waits(observer, source.name) > 0, WAIT_SECONDS
    )
    app.commit()
    running.result()

    assert recorder.keys() == [("posts", (1,))]
    assert log_depth(observer) == 0


def test_two_drainers_at_once_hand_off_each_row_exactly_once(sessions: Any) -> None:
    app = sessions()
    recorder = Recorder()
    for _ in range(20):
        insert_posts(app, 50)

    def slow_forward(changes: Sequence[Change]) -> None:
        time.sleep(0.01)  # keeps a batch claimed while the other drainer runs (a pace, not an assertion)
        recorder.send(changes)

    drainers = [DrainInThread(sessions(), recorder, CallbackQueue(slow_forward), batch_rows=40) for _ in range(2)]
    reports = [d.result() for d in drainers]

    keys = [k[1][0] for k in recorder.keys()]
    assert sorted(keys) == list(range(1, 1001))  # every row once: SKIP LOCKED never hands a row to both
    assert sum(r.claimed for r in reports) == 1000
    assert log_depth(app) == 0


# --------------------------------------------------------------------------- the send ahead (a second connection)


def log_rows_held(conn: pymysql.connections.Connection) -> tuple[int, int]:
    """(transactions, rows): who holds change-log rows right now (performance_schema.data_locks, read live)."""
    ((holders, held),) = rows(
        conn,
        "SELECT COUNT(DISTINCT ENGINE_TRANSACTION_ID), COUNT(*) FROM performance_schema.data_locks"
        " WHERE OBJECT_SCHEMA = %s AND OBJECT_NAME = %s AND LOCK_TYPE = 'RECORD'",
        conn.db.decode(),
        CHANGE_LOG_TABLE,
    )
    return int(holders), int(held)


def remaining_ids(conn: pymysql.connections.Connection) -> list[int]:
    """The posts ids whose change-log rows are still in the log, in order."""
    payloads = rows(conn, f"SELECT payload FROM {CHANGE_LOG_TABLE} ORDER BY id")
    return [json.loads(p)["pk"]["id"] for (p,) in payloads]


class SendsOnceTheNextBatchIsHeld:
    """A change queue whose send of batch ``pause_at`` (1-based) waits until a second transaction holds log rows
    beside the one being sent, i.e. until the drainer claimed the next batch while this one is in flight; then it
    fails if ``fail_at`` is that batch, else records."""

    def __init__(self, observer: pymysql.connections.Connection, *, pause_at: int, fail_at: int = 0) -> None:
        self.observer = observer
        self.pause_at, self.fail_at = pause_at, fail_at
        self.recorder = Recorder()
        self.sends = 0
        self.held_while_sending: tuple[int, int] | None = None

    def send(self, changes: Sequence[Change]) -> None:
        self.sends += 1
        if self.sends == self.pause_at:
            self.held_while_sending = wait_until(
                "the next batch claimed while this one is sent",
                lambda: (held := log_rows_held(self.observer))[0] == 2 and held,
                timeout=WAIT_SECONDS,
                interval=0.02,
            )
        if self.sends == self.fail_at:
            raise RuntimeError("queue unreachable")
        self.recorder.send(changes)


def test_with_a_second_connection_the_next_batch_is_claimed_and_parsed_while_the_last_is_sent(sessions: Any) -> None:
    app, conn, second, observer = sessions(), sessions(), sessions(), sessions()
    insert_posts(app, 30)
    queue = SendsOnceTheNextBatchIsHeld(observer, pause_at=1)

    report = drain(conn, default_mappings(), queue, queue.recorder.reject, batch_rows=10, second=second)

    # Then while batch 1 was on its way, batch 2 was held by the other connection: 2 transactions, 20 rows
    assert queue.held_while_sending == (2, 20)
    assert [k[1][0] for k in queue.recorder.keys()] == list(range(1, 31))  # every row once, in order
    assert (report.claimed, report.batches, report.sent_ahead) == (30, 3, 3)
    # And the drain line's times: sends timed, the drainer's waits for them and the deletes within its hand-offs
    # (a wait also holds the send thread's hand-back, so it may exceed the send it waited for by a thread switch)
    assert report.send_s > 0 and report.send_wait_s > 0 and report.handoff_s >= report.send_wait_s + report.delete_s
    assert log_depth(app) == 0


def test_a_failed_send_deletes_none_of_its_rows_while_the_next_batch_is_claimed_beside_it(sessions: Any) -> None:
    app, conn, second, observer = sessions(), sessions(), sessions(), sessions()
    insert_posts(app, 30)
    # Given batch 1's send fails once batch 2 is claimed and parsed beside it
    queue = SendsOnceTheNextBatchIsHeld(observer, pause_at=1, fail_at=1)

    with pytest.raises(RuntimeError, match="unreachable"):
        drain(conn, default_mappings(), queue, queue.recorder.reject, batch_rows=10, second=second)

    # Then neither batch 1 (refused) nor batch 2 (never sent) lost a row, and nothing holds them any more
    assert queue.held_while_sending == (2, 20)
    assert remaining_ids(app) == list(range(1, 31))
    assert log_rows_held(observer) == (0, 0)
    assert rows(app, "SELECT IS_FREE_LOCK(%s)", drain_lock_name(app.db.decode()))[0][0] == 1
    # And the next drain hands every row on
    again = Recorder()
    drain(sessions(), default_mappings(), again, again.reject, second=sessions())
    assert [k[1][0] for k in again.keys()] == list(range(1, 31))
    assert log_depth(app) == 0


def test_a_send_that_fails_after_an_accepted_one_leaves_its_rows_and_the_accepted_batch_is_deleted(
    sessions: Any,
) -> None:
    app, conn, second, observer = sessions(), sessions(), sessions(), sessions()
    insert_posts(app, 30)
    # Given batch 1 is accepted and batch 2's send fails while batch 3 is claimed beside it
    queue = SendsOnceTheNextBatchIsHeld(observer, pause_at=2, fail_at=2)

    with pytest.raises(RuntimeError, match="unreachable"):
        drain(conn, default_mappings(), queue, queue.recorder.reject, batch_rows=10, second=second)

    # Then batch 1's rows are gone (its changes were accepted), batches 2 and 3 wait for the next drain
    assert [k[1][0] for k in queue.recorder.keys()] == list(range(1, 11))
    assert remaining_ids(app) == list(range(11, 31))
    assert log_rows_held(observer) == (0, 0)


@pytest.mark.parametrize("seconds", [(True, True), (True, False)], ids=["both-send-ahead", "one-sends-ahead"])
def test_two_drainers_sending_ahead_hand_off_each_row_exactly_once_and_never_deadlock(
    sessions: Any, seconds: tuple[bool, bool]
) -> None:
    app = sessions()
    recorder = Recorder()
    for _ in range(20):
        insert_posts(app, 50)

    def slow_forward(changes: Sequence[Change]) -> None:
        time.sleep(0.01)  # keeps a batch in flight while the other drainer runs (a pace, not an assertion)
        recorder.send(changes)

    drainers = [
        DrainInThread(sessions(), recorder, CallbackQueue(slow_forward), batch_rows=40,
                      second=sessions() if has_second else None)
        for has_second in seconds
    ]  # fmt: skip
    reports = [d.result() for d in drainers]

    keys = [k[1][0] for k in recorder.keys()]
    assert sorted(keys) == list(range(1, 1001))  # every row once, none lost
    assert sum(r.claimed for r in reports) == 1000
    assert reports[0].sent_ahead == reports[0].batches  # the first drainer sent every batch ahead
    assert log_depth(app) == 0


def explain_delete(conn: pymysql.connections.Connection, sql: str, ids: Sequence[int]) -> tuple[str, str | None]:
    """How MySQL plans a DELETE of the log rows ``ids``: (access type, key)."""
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"EXPLAIN {sql}", tuple(ids))
        [plan] = cur.fetchall()
    return plan["type"], plan["key"]


def test_the_drainers_delete_is_planned_as_primary_key_points_where_a_plain_in_list_would_scan(sessions: Any) -> None:
    app = sessions()
    insert_posts(app, 10)
    execute(app, f"ANALYZE TABLE {CHANGE_LOG_TABLE}")
    ids = [int(i) for (i,) in rows(app, f"SELECT id FROM {CHANGE_LOG_TABLE} ORDER BY id")]

    plain = f"DELETE FROM {CHANGE_LOG_TABLE} WHERE id IN ({', '.join(['%s'] * len(ids))})"
    # Given a small log whose claimed rows are most of it: the optimizer would scan it, waiting on every row another
    # drainer holds (the deadlock the two-drainer test above would meet)
    assert explain_delete(app, plain, ids) == ("ALL", None)
    # Then the drainer's own statement is the primary key's point ranges, for a whole chunk as for one row
    assert explain_delete(app, delete_statement(len(ids)), ids) == ("range", "PRIMARY")
    assert explain_delete(app, delete_statement(1), ids[:1]) == ("range", "PRIMARY")
    assert DELETE_CHUNK <= 100  # a chunk's ranges stay a few KB of range_optimizer_max_mem_size (8 MB by default)


def test_a_delete_mysql_cannot_plan_by_primary_key_fails_and_its_rows_stay(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    insert_posts(app, 3)
    recorder = Recorder()
    # Given a session whose range optimizer may use no memory at all: no point ranges, only a scan is left
    execute(conn, "SET SESSION range_optimizer_max_mem_size = 1")

    with pytest.raises(pymysql.err.OperationalError) as failed:
        drain(conn, default_mappings(), recorder, recorder.reject)

    assert failed.value.args[0] == 1175  # safe-update mode refused the scan rather than running it
    assert log_depth(app) == 3  # the hand-off rolled back: the rows wait for the next drainer
    assert rows(app, "SELECT IS_FREE_LOCK(%s)", drain_lock_name(app.db.decode()))[0][0] == 1


def test_a_drainer_killed_mid_batch_deletes_nothing_and_the_next_one_redelivers(sessions: Any) -> None:
    app, killer, conn = sessions(), sessions(), sessions()
    insert_posts(app, 30)
    drainer_id = conn.thread_id()
    delivered = Recorder()

    def forward_then_die(changes: Sequence[Change]) -> None:
        delivered.send(changes)  # the hand-off happened ...
        execute(killer, f"KILL CONNECTION {int(drainer_id)}")  # ... and the drainer dies before its DELETE

    with pytest.raises(pymysql.err.Error):
        drain(conn, default_mappings(), CallbackQueue(forward_then_die), delivered.reject, batch_rows=10)

    # Then nothing was deleted: the killed transaction rolled back, the lock went with the connection
    assert log_depth(app) == 30
    assert [k[1][0] for k in delivered.keys()] == list(range(1, 11))
    # And the next drainer hands everything off (the first ten twice: the fetcher's version gate absorbs it)
    again = Recorder()
    drain(sessions(), default_mappings(), again, again.reject)
    assert [k[1][0] for k in again.keys()] == list(range(1, 31))
    assert log_depth(app) == 0


def test_a_failed_hand_off_leaves_the_rows_for_the_next_drainer(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    insert_posts(app, 3)

    def broken(changes: Sequence[Change]) -> None:
        raise RuntimeError("queue unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        drain(conn, default_mappings(), CallbackQueue(broken), Recorder().reject)

    assert log_depth(app) == 3
    assert rows(app, "SELECT IS_FREE_LOCK(%s)", drain_lock_name(app.db.decode()))[0][0] == 1


def test_status_shows_depth_and_the_age_of_the_oldest_row(sessions: Any) -> None:
    app = sessions()
    insert_posts(app, 4)

    status = change_log_status(app)

    assert status.depth == 4
    assert status.oldest is not None and status.oldest_age_seconds is not None and status.oldest_age_seconds >= 0


# --------------------------------------------------------------------------- the handlers


def test_a_ring_makes_the_parser_handler_drain_into_the_fetch_queue_and_anything_else_is_recorded(
    sessions: Any, db_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fanout.pipeline.fetch_queue import QueueForwarder
    from fanout.pipeline.parser import NOT_A_RING
    from fanout.pipeline.rejects import QueueRejectRecorder
    from tests.support.fakes import FakeContext, FakeSQSClient, load_app, load_event

    app_module = load_app("parser_fn/app.py", "parser_app_change_log")
    fetch_queue, sqs = FakeSQSClient(), FakeSQSClient()
    monkeypatch.setattr(
        app_module,
        "_dependencies",
        lambda: (
            QueueForwarder(fetch_queue, "https://fetch"),
            QueueRejectRecorder(sqs, "https://dlq", source="parser"),
            FakeLambdaClient(),
        ),
    )
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    app = sessions()
    insert_posts(app, 3)
    context = FakeContext(aws_request_id="req-ring-1")
    context.get_remaining_time_in_millis = lambda: 60_000  # type: ignore[attr-defined]

    # When the parser is rung (events/ring.json is what a trigger sends)
    try:
        drained = app_module.handler(load_event("ring.json"), context)
        # And a per-row payload of the retired triggers arrives
        legacy = app_module.handler(load_event("update.json"), FakeContext(aws_request_id="req-old-1"))
    finally:
        app_module._database("lock").close()
        app_module._database("send-ahead").close()
        app_module._database.cache_clear()

    # Then the ring drained the log into the fetch queue, one message per change, and the old payload was recorded
    assert drained["claimed"] == 3 and drained["forwarded"] == 3
    assert drained["sent_ahead"] == 1  # the handler drains with its second connection
    # one message: the drained batch, packed
    assert [[c["pk"] for c in b["changes"]] for b in fetch_queue.bodies()] == [[{"id": 1}, {"id": 2}, {"id": 3}]]
    assert {c["correlation_id"] for b in fetch_queue.bodies() for c in b["changes"]} == {"req-ring-1"}
    assert legacy == {"accepted": 0, "rejected": 1, "reason": NOT_A_RING}
    [record] = sqs.bodies()
    assert (record["reason"], record["correlation_id"]) == (NOT_A_RING, "req-old-1")
    assert log_depth(app) == 0


def test_the_sweeper_rings_the_parser_only_while_rows_wait(sessions: Any, source: Any) -> None:
    app, conn = sessions(), sessions()
    lambda_client = FakeLambdaClient()

    empty = sweep_once(conn, lambda_client, "the-parser")[0]
    # A drainer holding the lock (alive or a dead session) does not stop the sweeper's ring
    execute(sessions(), "SELECT GET_LOCK(%s, 0)", drain_lock_name(source.name))
    insert_posts(app, 2)
    waiting = sweep_once(conn, lambda_client, "the-parser")[0]

    assert empty is not None and empty.depth == 0
    assert waiting is not None and waiting.depth == 2
    [call] = lambda_client.invocations
    assert call["FunctionName"] == "the-parser" and call["InvocationType"] == "Event"
    assert is_ring(json.loads(call["Payload"]))


def test_one_sweep_at_a_time_rings_and_a_sweep_that_finds_another_under_way_does_nothing(
    sessions: Any, source: Any
) -> None:
    app, conn, other = sessions(), sessions(), sessions()
    lambda_client = FakeLambdaClient()
    insert_posts(app, 2)

    # Given another sweep under way (it holds the sweep lock), When a sweep runs, Then it rings nothing
    execute(other, "SELECT GET_LOCK(%s, 0)", sweep_lock_name(source.name))
    busy = sweep(conn, lambda_client, "the-parser")
    assert (busy.busy, busy.status, lambda_client.invocations) == (True, None, [])

    # And once that sweep is done, the next one rings for the two waiting rows, and leaves the lock free
    execute(other, "DO RELEASE_LOCK(%s)", sweep_lock_name(source.name))
    done = sweep(conn, lambda_client, "the-parser")
    assert not done.busy and done.status is not None and done.status.depth == 2
    assert len(lambda_client.invocations) == 1
    assert sweep(other, lambda_client, "the-parser").busy is False


def test_fanout_status_reports_the_change_log_depth_and_oldest_age(sessions: Any, db_env: Any) -> None:
    from fanout_cli.commands.status import _change_log_line, change_log

    app = sessions()
    insert_posts(app, 3)

    entry = change_log()

    assert entry["depth"] == 3 and entry["oldest_age_seconds"] >= 0
    assert _change_log_line(entry).startswith("change log: 3 row(s) waiting, oldest ")
    assert change_log({"DB_HOST": ""})["error"].startswith("not read: ")


class UntilSet:
    """Time left until the event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def left(self) -> float:
        return 0.0 if self.event.is_set() else math.inf


def test_a_lingering_drainer_takes_a_stream_of_writes_without_a_ring_each(sessions: Any, source: Any) -> None:
    app, observer, conn = sessions(), sessions(), sessions()
    recorder = Recorder()
    stop = threading.Event()
    lock = drain_lock_name(source.name)
    # Given a drainer that keeps the lock while the log is empty (the rung parser's linger)
    running = DrainInThread(conn, recorder, idle_seconds=60, deadline=UntilSet(stop))
    wait_until(
        "the drainer to hold the lock", lambda: rows(observer, "SELECT IS_FREE_LOCK(%s)", lock)[0][0] == 0, WAIT_SECONDS
    )

    # When single-row writes keep coming
    for _ in range(5):
        insert_posts(app, 1)
    wait_until("the drainer to take them", lambda: len(recorder.forwarded) == 5, WAIT_SECONDS)
    stop.set()
    running.result()

    # Then none of them rang, and all were handed on
    assert lambda_async_calls(observer) == []
    assert [k[1][0] for k in recorder.keys()] == [1, 2, 3, 4, 5]
    assert log_depth(observer) == 0


class WritesWhileTheDrainerLooks:
    """A deadline with no limit that runs ``write`` the fifth time the drainer asks it after its first hand-off:
    by then the drainer has seen the log empty and still holds the lock, looking for rows. A drainer that lets go
    at once asks it twice after its hand-off (before its next claim and before its waiting claim) and returns."""

    ASKS = 5

    def __init__(self, recorder: Recorder, write: Callable[[], None]) -> None:
        self.recorder = recorder
        self.write = write
        self.asked = 0

    def left(self) -> float:
        if self.recorder.forwarded and self.asked < self.ASKS:
            self.asked += 1
            if self.asked == self.ASKS:
                self.write()
        return math.inf


def test_a_drainer_keeps_the_lock_for_the_ring_interval_so_a_statement_the_throttle_held_back_is_drained(
    sessions: Any,
) -> None:
    app, observer, conn = sessions(), sessions(), sessions()
    recorder = Recorder()
    # Given a session whose statement rang early in a second (the lock was free, the second's token too)
    next_second(app)
    insert_posts(app, 1, title="rang")
    [ring] = lambda_async_calls(observer)

    # When the drainer that ring started (here with no idle time of its own, as the sweeper's drain) has handed
    # the row on and found the log empty, and the session writes again
    deadline = WritesWhileTheDrainerLooks(recorder, lambda: insert_posts(app, 1, title="held back"))
    report = DrainInThread(conn, recorder, deadline=deadline).result()
    if deadline.asked < deadline.ASKS:  # the drainer let go at once and returned: the write comes after it
        insert_posts(app, 1, title="held back")

    # Then the second statement rang no parser (within the ring's second the throttle holds it back, and while
    # the drainer holds the lock, the lock does), yet the drain took it: it held the lock for the ring interval
    # after it found the log empty, and looked again
    assert lambda_async_calls(observer) == [ring]
    assert log_depth(observer) == 0, "the held-back statement's row was left for the sweeper"
    assert [k[1][0] for k in recorder.keys()] == [1, 2] and report.claimed == 2


class CountingDeadline:
    """No limit; counts how often the drainer asked it (once before each claim, each wait and each look)."""

    def __init__(self) -> None:
        self.asked = 0

    def left(self) -> float:
        self.asked += 1
        return math.inf


def test_a_rung_drainer_that_finds_the_lock_held_and_nothing_committed_leaves_after_one_look(
    sessions: Any, source: Any
) -> None:
    app, holder, conn = sessions(), sessions(), sessions()
    recorder = Recorder()
    # Given a drainer at work (it holds the lock) and a writer whose row is not committed yet
    execute(holder, "SELECT GET_LOCK(%s, 0)", drain_lock_name(source.name))
    app.begin()
    insert_posts(app, 1)

    # When one of a herd of rung parsers starts (with the parser's own linger)
    deadline = CountingDeadline()
    report = drain(conn, default_mappings(), recorder, recorder.reject, idle_seconds=2.0, deadline=deadline)

    # Then it took one look at what is committed and left: no linger, no wait for the writer (the holder's work)
    assert (report.claimed, report.held_lock, report.stopped) == (0, False, "")
    assert deadline.asked == 1
    app.rollback()


# --------------------------------------------------------------------------- the drain bounded by the time left
# A drainer claims only what fits in its time (its first claim small, then as many rows as its measured hand-off
# rate says fit twice over) and, out of time with rows left and no other drainer at work, rings its successor
# before it returns. The sweeper drains the log itself when rows wait and no drainer holds the lock (a ring could
# be queued behind a burst's rings, or lost); while a drainer holds it, the sweeper rings instead.


def test_out_of_time_a_drainer_hands_on_what_it_claimed_and_rings_its_successor(sessions: Any) -> None:
    # Given 300 rows waiting, and a drainer with 3.5 s left whose every hand-off takes 0.6 s
    app, conn = sessions(), sessions()
    insert_posts(app, 300)
    recorder, rings, sizes = Recorder(), [], []

    def slow_forward(changes: Sequence[Change]) -> None:
        sizes.append(len(changes))
        recorder.send(changes)
        time.sleep(0.6)

    # When it drains with a successor to ring
    report = drain(conn, default_mappings(), CallbackQueue(slow_forward), recorder.reject, deadline=Deadline.after(3.5),
                   ring_successor=lambda: rings.append(1))  # fmt: skip

    # Then its first claim was small and the next ones only what still fit; every claimed row was handed on
    # and deleted, the rest waits; and out of time it rang one successor before it returned
    assert sizes[0] == FIRST_BATCH_ROWS and all(later < FIRST_BATCH_ROWS for later in sizes[1:])
    assert len(recorder.forwarded) == report.claimed < 300 and log_depth(app) == 300 - report.claimed
    assert (report.stopped, report.successor_rung, rings) == (OUT_OF_TIME, True, [1])


def test_a_small_batch_does_not_shrink_the_claims_of_the_backlog_after_it(sessions: Any) -> None:
    # Given a drainer whose first claim finds 5 rows, and 600 more committed while it sends them (0.3 s a send)
    app, conn = sessions(), sessions()
    insert_posts(app, 5)
    recorder, sizes = Recorder(), []

    def writes_while_sending(changes: Sequence[Change]) -> None:
        if not sizes:
            insert_posts(app, 600)
        sizes.append(len(changes))
        recorder.send(changes)
        time.sleep(0.3)  # a send's fixed cost (a pace, not an assertion)

    # When it drains with time enough (30 s)
    drain(conn, default_mappings(), CallbackQueue(writes_while_sending), recorder.reject, deadline=Deadline.after(30))

    # Then the backlog went in one claim: 0.3 s for 5 rows is no measure of a row (60 ms each, over 28 s left
    # twice over: 233 rows a claim)
    assert sizes == [5, 600]
    assert log_depth(app) == 0


def test_a_drainer_that_finishes_in_time_rings_no_successor(sessions: Any) -> None:
    app, conn = sessions(), sessions()
    insert_posts(app, 3)
    recorder, rings = Recorder(), []

    report = drain(conn, default_mappings(), recorder, recorder.reject, deadline=Deadline.after(30),
                   ring_successor=lambda: rings.append(1))  # fmt: skip

    assert (report.claimed, report.stopped, rings) == (3, "", [])


def test_out_of_time_while_another_drainer_holds_the_lock_no_second_chain_is_rung(
    sessions: Any, source: DatabaseSettings
) -> None:
    app, conn, holder = sessions(), sessions(), sessions()
    insert_posts(app, 5)
    execute(holder, "SELECT GET_LOCK(%s, 0)", drain_lock_name(source.name))
    recorder, rings = Recorder(), []

    report = drain(conn, default_mappings(), recorder, recorder.reject, deadline=Deadline.after(0.5),
                   ring_successor=lambda: rings.append(1))  # fmt: skip

    assert report.stopped == OUT_OF_TIME and rings == [] and not report.successor_rung


def test_the_sweeper_drains_itself_when_rows_wait_and_no_drainer_is_at_work(sessions: Any) -> None:
    # Given rows waiting and no drainer holding the lock (their rings queued behind a burst, or lost)
    app, conn = sessions(), sessions()
    insert_posts(app, 4)
    recorder, lambda_client = Recorder(), FakeLambdaClient()

    # When the sweeper runs with its own drain
    result = sweep(conn, lambda_client, "the-parser",
                   drain_here=lambda: drain(conn, default_mappings(), recorder, recorder.reject))  # fmt: skip

    # Then the drain started at once, in the sweep: every row handed on, no ring needed
    assert result.drained is not None and result.drained.claimed == 4
    assert log_depth(app) == 0 and len(recorder.forwarded) == 4 and lambda_client.invocations == []
    assert result.status is not None and result.status.depth == 4


def test_the_sweeper_rings_when_a_drainer_holds_the_lock(sessions: Any, source: DatabaseSettings) -> None:
    app, conn, holder = sessions(), sessions(), sessions()
    insert_posts(app, 2)
    execute(holder, "SELECT GET_LOCK(%s, 0)", drain_lock_name(source.name))
    lambda_client, drained = FakeLambdaClient(), []

    def must_not_drain() -> Any:
        drained.append(1)

    result = sweep(conn, lambda_client, "the-parser", drain_here=must_not_drain)

    assert result.drained is None and drained == [] and log_depth(app) == 2
    [call] = lambda_client.invocations
    assert call["InvocationType"] == "Event" and is_ring(json.loads(call["Payload"]))
