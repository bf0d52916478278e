"""The local ``lambda_async`` behaves as Aurora MySQL's native function does where fanout depends on it.

Aurora MySQL 3's ``lambda_async(function_arn, payload)`` is global (no schema prefix), calls Lambda's
``Invoke`` API from inside the statement (before COMMIT, and a ROLLBACK cannot take it back), raises
ERROR 1873 ("Lambda API returned error: ...") in the statement when Lambda cannot be reached, costs the
writer the call's round trip, and holds no table and no lock. Locally it is a loadable function handing
each call to the bridge (local/lambda_async/); each test below fails if the stand-in loses one of those
properties. The last two are the ones a stored function appending to a table (the MariaDB-era shim) broke:
every captured statement pre-locked that table, so a deadlock between two captured writes became a lock
wait timeout and a writer waiting on one row stalled captured writes to every other row.

Captured writes go through the project's own triggers (db/migrations, applied as the post-deploy hook
applies them), ringing a parser ARN of the test's own; the bridge only remembers those calls.
Concurrency is driven by real sessions on threads and observed through InnoDB's lock waits
(performance_schema.data_lock_waits), never by sleeping.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from fanout.capture.names import CHANGE_LOG_TABLE
from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from local.config import LocalConfig
from local.lambda_async.bridge import Control
from local.processes import running_pid, stop_process
from local.services import ensure_lambda_async_bridge
from tests.support.integration import (
    execute,
    install_capture_triggers,
    lambda_async_bridge,
    lock_waits,
    next_second,
    parser_arn,
    rows,
)
from tests.support.waiting import wait_until

WAIT_SECONDS = 30.0
ER_LAMBDA = 1873  # Aurora MySQL: "Lambda API returned error: ..."
ER_LOCK_DEADLOCK = 1213
LAMBDA_DOWN = "Network Connection. Unable to connect to endpoint (test)"
DEADLOCK_REPORTED_WITHIN = 1.0  # seconds; InnoDB detects the cycle when the request that closes it is made
AURORA_LOCK_WAIT_TIMEOUT = 50  # Aurora MySQL's default innodb_lock_wait_timeout


@pytest.fixture
def bridge() -> Control:
    return lambda_async_bridge()


@pytest.fixture
def source(db_settings: DatabaseSettings, bridge: Control) -> Iterator[DatabaseSettings]:
    """The demo schema with the project's capture triggers and two committed posts (ids 1 and 2)."""
    install_capture_triggers(db_settings)
    conn = connect(db_settings)
    try:
        execute(conn, "SET @fanout_disable = 1")  # the seed is no change to capture
        execute(conn, "INSERT INTO posts (id, title, body, author) VALUES (1, 'one', 'b', 'a'), (2, 'two', 'b', 'a')")
    finally:
        conn.close()
    yield db_settings
    bridge.reset(parser_arn(db_settings.name))


@pytest.fixture
def sessions(
    source: DatabaseSettings, sessions: Callable[..., pymysql.connections.Connection]
) -> Callable[..., pymysql.connections.Connection]:
    """The shared ``sessions`` (tests/integration/conftest.py: each rolled back and closed after the test), opened
    once the capture triggers are installed."""
    return sessions


class Statement:
    """One statement of one session, run on a thread: when it was sent, when it ended, and its error if any."""

    def __init__(self, conn: pymysql.connections.Connection, sql: str, *args: Any) -> None:
        self.error: pymysql.err.MySQLError | None = None
        self.sent_at = 0.0
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(conn, sql, args), daemon=True)
        self._thread.start()

    def _run(self, conn: pymysql.connections.Connection, sql: str, args: tuple[Any, ...]) -> None:
        self.sent_at = time.monotonic()
        try:
            execute(conn, sql, *args)
        except pymysql.err.MySQLError as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def running(self) -> bool:
        return self._thread.is_alive()

    def ended(self) -> Statement:
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), f"the statement did not end within {WAIT_SECONDS:.0f}s"
        return self

    @property
    def errno(self) -> int | None:
        return None if self.error is None else int(self.error.args[0])


def accepted_rings(bridge: Control, database: str) -> int:
    """How many of the schema's rings the bridge accepted (as Lambda accepts an asynchronous invoke)."""
    return sum(call["outcome"].startswith("OK") for call in bridge.calls(parser_arn(database)))


def lambda_async_error(conn: pymysql.connections.Connection, arn: str) -> tuple[int, str]:
    """(error code, message) of a direct ``lambda_async`` call that must fail."""
    with pytest.raises(pymysql.err.MySQLError) as failed:
        rows(conn, "SELECT lambda_async(%s, '{}')", arn)
    return int(failed.value.args[0]), str(failed.value.args[1])


def logged_count(conn: pymysql.connections.Connection) -> int:
    return int(rows(conn, f"SELECT COUNT(*) FROM {CHANGE_LOG_TABLE}")[0][0])


# --------------------------------------------------------------------------- global, before COMMIT, kept on ROLLBACK


def test_it_is_callable_from_any_schema_and_from_none_without_a_prefix(
    mysql: dict[str, Any], source: DatabaseSettings, bridge: Control
) -> None:
    # Given a schema with nothing in it (no migration, no routine), and a session with no schema at all
    arn = parser_arn(source.name)
    empty = f"fanout_t_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(**mysql, autocommit=True)
    try:
        execute(admin, f"CREATE DATABASE `{empty}`")
        in_empty = pymysql.connect(**mysql, database=empty, autocommit=True)
        try:
            # When each calls lambda_async by its bare name
            answers = [rows(conn, "SELECT lambda_async(%s, %s)", arn, f'{{"from": "{where}"}}')[0][0]
                       for conn, where in ((in_empty, "empty"), (admin, "none"))]  # fmt: skip
        finally:
            in_empty.close()
        # Then both calls reached Lambda (the bridge), as Aurora's native function does from anywhere
        assert answers == [b"202", b"202"]  # the invoke's status (a loadable function's string is binary)
        assert [call["payload"] for call in bridge.calls(arn)] == ['{"from": "empty"}', '{"from": "none"}']
        # And it is no stored routine of any schema: it is the server's own function
        assert rows(admin, "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_NAME = 'lambda_async'") == [
            (0,)
        ]
    finally:
        execute(admin, f"DROP DATABASE IF EXISTS `{empty}`")
        admin.close()


def test_the_call_leaves_before_commit_and_a_rollback_does_not_undo_it(
    sessions: Callable[[], pymysql.connections.Connection], source: DatabaseSettings, bridge: Control
) -> None:
    app, observer = sessions(), sessions()
    # Given a captured write in a transaction that is still open
    app.begin()
    execute(app, "UPDATE posts SET title = 'uncommitted' WHERE id = 1")
    assert rows(observer, "SELECT title FROM posts WHERE id = 1") == [("one",)]  # nobody else sees it yet

    # Then its ring has already reached Lambda (the bridge), inside the statement, before COMMIT
    assert accepted_rings(bridge, source.name) == 1

    # When the transaction rolls back
    app.rollback()

    # Then the change and its log row are gone, but the call stays made: nothing can take an invoke back
    assert rows(observer, "SELECT title FROM posts WHERE id = 1") == [("one",)]
    assert logged_count(observer) == 0
    assert accepted_rings(bridge, source.name) == 1


# --------------------------------------------------------------------------- failures and delays


def test_a_failing_call_raises_1873_and_the_capture_trigger_keeps_the_write(
    sessions: Callable[[], pymysql.connections.Connection], source: DatabaseSettings, bridge: Control
) -> None:
    app = sessions()
    # Given Lambda cannot be reached for the parser's ARN
    arn = parser_arn(source.name)
    bridge.configure(arn, fail=LAMBDA_DOWN)

    # Then a direct call fails its statement with Aurora's error
    assert lambda_async_error(app, arn) == (ER_LAMBDA, f"Lambda API returned error: {LAMBDA_DOWN}")

    # And a captured write still succeeds: the trigger's handler takes the error, the change stays logged
    execute(app, "UPDATE posts SET title = 'written while Lambda is down' WHERE id = 1")
    assert rows(app, "SELECT title FROM posts WHERE id = 1") == [("written while Lambda is down",)]
    assert rows(app, "SELECT @fanout_ring_error") == [(f"Lambda API returned error: {LAMBDA_DOWN}",)]
    assert logged_count(app) == 1
    assert [call["outcome"] for call in bridge.calls(arn)] == [f"ERR {LAMBDA_DOWN}"] * 2


def test_a_stopped_bridge_fails_the_call_with_1873_and_the_write_still_succeeds(
    sessions: Callable[[], pymysql.connections.Connection], source: DatabaseSettings
) -> None:
    # Given the bridge is down (Lambda's endpoint unreachable): this checkout's own, which the session started
    app = sessions()
    cfg = LocalConfig.from_env()
    assert running_pid("bridge") is not None, "the lambda_async bridge on this port was not started by this checkout"
    assert stop_process("bridge")
    try:
        # Then a direct call fails its statement with Aurora's error
        code, message = lambda_async_error(app, parser_arn(source.name))
        assert code == ER_LAMBDA
        assert message.startswith("Lambda API returned error: Network Connection. Unable to connect to endpoint")

        # And a captured write succeeds, its change logged for the sweeper's ring
        execute(app, "UPDATE posts SET title = 'written while the bridge is down' WHERE id = 2")
        assert rows(app, "SELECT @fanout_ring_error")[0][0].startswith("Lambda API returned error: Network")
        assert logged_count(app) == 1
    finally:
        ensure_lambda_async_bridge(cfg)


def test_a_set_delay_costs_the_writer_that_delay_for_each_call(
    sessions: Callable[[], pymysql.connections.Connection], source: DatabaseSettings, bridge: Control
) -> None:
    # Given each call costs 200 ms (the benchmarks use Aurora's ~35 ms)
    delay_ms = 200
    bridge.configure(parser_arn(source.name), deliver=False, delay_ms=delay_ms)

    # When three captured statements run, each in a second of its own (each rings once: a schema rings at most
    # once a second)
    took = []
    for key in (1, 2, 1):
        app = sessions()
        next_second(app)
        started = time.monotonic()
        execute(app, "UPDATE posts SET title = CONCAT(title, '!') WHERE id = %s", key)
        took.append(time.monotonic() - started)

    # Then each statement waited out its call's delay
    assert all(seconds >= delay_ms / 1000 for seconds in took), took
    assert accepted_rings(bridge, source.name) == 3


# --------------------------------------------------------------------------- no table, no lock


def test_two_captured_writes_that_deadlock_get_1213_in_under_a_second(
    sessions: Callable[[], pymysql.connections.Connection], source: DatabaseSettings, bridge: Control
) -> None:
    first, second, observer = sessions(), sessions(), sessions()
    # Given two transactions, each with a captured write to one row (each rang)
    first.begin()
    execute(first, "UPDATE posts SET title = 'first' WHERE id = 1")
    second.begin()
    next_second(observer)  # a schema rings at most once a second
    execute(second, "UPDATE posts SET title = 'second' WHERE id = 2")
    assert accepted_rings(bridge, source.name) == 2
    # And the first waiting for the second's row
    first_waits = Statement(first, "UPDATE posts SET title = 'first' WHERE id = 2")
    wait_until("the first writer to wait", lambda: lock_waits(observer, source.name) == 1, WAIT_SECONDS)

    # When the second asks for the first's row (the request that closes the cycle)
    second_asks = Statement(second, "UPDATE posts SET title = 'second' WHERE id = 1")
    first_waits.ended()
    second_asks.ended()

    # Then InnoDB sees the deadlock at once and ends one of them with 1213; the other's statement goes through
    errors = [first_waits.error, second_asks.error]
    assert sorted(statement.errno or 0 for statement in (first_waits, second_asks)) == [0, ER_LOCK_DEADLOCK], errors
    victim, survivor = (first_waits, second_asks) if first_waits.error else (second_asks, first_waits)
    reported_after = victim.ended_at - second_asks.sent_at
    print(f"deadlock reported {reported_after * 1000:.1f} ms after the request that closed the cycle")
    assert reported_after < DEADLOCK_REPORTED_WITHIN, reported_after
    # And the survivor's captured writes commit, logged (the victim's transaction was rolled back whole, its log
    # row with it)
    (first if survivor is first_waits else second).commit()
    assert logged_count(observer) == 2


def test_a_writer_waiting_on_one_row_lock_does_not_delay_captured_writes_to_other_rows(
    sessions: Callable[[], pymysql.connections.Connection], source: DatabaseSettings, bridge: Control
) -> None:
    holder, waiter, other, observer = sessions(), sessions(), sessions(), sessions()
    # Given a transaction holding row 1 (its captured write rang), and a captured write waiting for that row
    holder.begin()
    execute(holder, "UPDATE posts SET title = 'held' WHERE id = 1")
    execute(waiter, "SET SESSION innodb_lock_wait_timeout = %s", AURORA_LOCK_WAIT_TIMEOUT)
    waiting = Statement(waiter, "UPDATE posts SET title = 'waited' WHERE id = 1")
    wait_until("the writer to wait for row 1", lambda: lock_waits(observer, source.name) == 1, WAIT_SECONDS)

    # When another session writes row 2 (autocommit), in a second of its own (a schema rings at most once a second)
    next_second(observer)
    written = Statement(other, "UPDATE posts SET title = 'not delayed' WHERE id = 2").ended()

    # Then it committed and rang while the waiter is still waiting (it did not queue behind it)
    assert written.error is None
    assert waiting.running() and lock_waits(observer, source.name) == 1
    assert rows(observer, "SELECT title FROM posts WHERE id = 2") == [("not delayed",)]
    assert accepted_rings(bridge, source.name) == 2  # the holder's and this one's

    # And once the holder commits (in a second of its own), the waiter's write goes through and rings too
    next_second(observer)
    holder.commit()
    assert waiting.ended().error is None
    assert accepted_rings(bridge, source.name) == 3
