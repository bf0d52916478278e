"""The fallback sweeper against MySQL 8.0: rows parked by the real triggers, Lambda played by a scripted client.

The invoke itself goes through the deployed stack in tests/e2e/test_fallback_path.py;
here a client that answers like Lambda (202, or the real botocore errors) lets each
outcome be chosen per payload.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from fanout.capture.migrations import MigrationRunner
from fanout.capture.names import FALLBACK_TABLE
from fanout.capture.sweeper import fallback_status, lock_name, sweep
from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from tests.support.files import ROOT

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fanout-sweeper-test-parser"


@dataclass
class ScriptedLambda:
    """Answers ``invoke`` with 202, or with the error scripted for the payload's key."""

    errors: dict[int, Exception] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invocations.append(kwargs)
        key = json.loads(kwargs["Payload"])["pk"]["id"]
        if key in self.errors:
            raise self.errors[key]
        return {"StatusCode": 202}

    def keys(self) -> list[int]:
        return [json.loads(i["Payload"])["pk"]["id"] for i in self.invocations]


@dataclass
class RecordingReject:
    records: list[tuple[str, Any, str]] = field(default_factory=list)

    def __call__(self, reason: str, payload: Any, correlation_id: str) -> None:
        self.records.append((reason, payload, correlation_id))


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (scripted)"}}, "Invoke")


@pytest.fixture
def source(db_settings: DatabaseSettings) -> Iterator[pymysql.connections.Connection]:
    """The demo schema migrated with db/migrations; a connection like the sweeper's own."""
    conn = connect(db_settings)
    MigrationRunner(
        lambda: connect(db_settings), ROOT / "db" / "migrations", {"parser_function_arn": ARN}, "test"
    ).migrate()
    yield conn
    conn.close()


def park(conn: pymysql.connections.Connection, count: int) -> list[int]:
    """Insert ``count`` posts and park their payloads as the per-row triggers (up to V004) did; their keys.

    The change-log triggers (V006 on) park nothing; what the earlier ones parked is still swept until none is left.
    """
    keys = []
    with conn.cursor() as cur:
        cur.execute("SET @fanout_disable = 1")
        for n in range(count):
            cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'a')", (f"parked {n}",))
            key = int(cur.lastrowid)
            payload = {"v": 1, "action": "insert", "table": "posts", "pk": {"id": key}, "ts": 1764240000.5}
            cur.execute(
                f"INSERT INTO {FALLBACK_TABLE} (function_arn, payload, invoke_error) VALUES (%s, %s, %s)",
                (ARN, json.dumps(payload), "Lambda API returned error: Network Connection. (parked by the test)"),
            )
            keys.append(key)
        cur.execute("SET @fanout_disable = NULL")
    return keys


def parked(conn: pymysql.connections.Connection) -> list[tuple[int, int, str | None]]:
    """(key, sweep_attempts, sweep_error) of each parked row, oldest first."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT payload, sweep_attempts, sweep_error FROM {FALLBACK_TABLE} ORDER BY id")
        return [(json.loads(p)["pk"]["id"], int(a), e) for p, a, e in cur.fetchall()]


def stored_payloads(conn: pymysql.connections.Connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT payload FROM {FALLBACK_TABLE} ORDER BY id")
        return [str(p) for (p,) in cur.fetchall()]


def test_each_parked_payload_is_invoked_as_lambda_async_would_then_deleted(
    source: pymysql.connections.Connection,
) -> None:
    # Given three changes parked by the triggers
    keys = park(source, 3)
    payloads = stored_payloads(source)
    lambda_client, reject = ScriptedLambda(), RecordingReject()

    # When
    report = sweep(source, lambda_client, reject)

    # Then each went to the parser, asynchronously, byte for byte as the trigger built it
    assert lambda_client.invocations == [
        {"FunctionName": ARN, "InvocationType": "Event", "Payload": payload.encode()} for payload in payloads
    ]
    assert lambda_client.keys() == keys
    # And the table is empty
    assert (report.delivered, report.failed, report.rejected, report.remaining, report.stopped) == (3, 0, 0, 0, "")
    assert parked(source) == []
    assert reject.records == []


def test_a_failed_invoke_keeps_its_row_with_the_error_and_the_others_go_on(
    source: pymysql.connections.Connection,
) -> None:
    # Given three parked changes, the second of which Lambda throttles
    first, second, third = park(source, 3)
    lambda_client = ScriptedLambda(errors={second: client_error("TooManyRequestsException")})

    # When
    report = sweep(source, lambda_client, RecordingReject())

    # Then only the failed one stays, marked, for the next run
    assert (report.delivered, report.failed, report.remaining) == (2, 1, 1)
    [(key, attempts, error)] = parked(source)
    assert (key, attempts) == (second, 1)
    assert error is not None and "TooManyRequestsException" in error

    # And the next run, with Lambda back, delivers it
    again = sweep(source, ScriptedLambda(), RecordingReject())
    assert (again.delivered, again.remaining) == (1, 0)
    assert lambda_client.keys() == [first, second, third]


def test_rows_that_failed_before_go_last(source: pymysql.connections.Connection) -> None:
    # Given a row that failed in an earlier run, then newer rows
    [old] = park(source, 1)
    sweep(source, ScriptedLambda(errors={old: client_error("ServiceException")}), RecordingReject())
    newer = park(source, 2)
    lambda_client = ScriptedLambda()

    # When
    sweep(source, lambda_client, RecordingReject())

    # Then the newer rows were taken first
    assert lambda_client.keys() == [*newer, old]


def test_consecutive_failures_end_the_run_and_leave_the_rest_untouched(
    source: pymysql.connections.Connection,
) -> None:
    # Given five parked changes and an endpoint that cannot be reached
    keys = park(source, 5)
    unreachable = EndpointConnectionError(endpoint_url="https://lambda.us-east-1.amazonaws.com")
    lambda_client = ScriptedLambda(errors={key: unreachable for key in keys})

    # When
    report = sweep(source, lambda_client, RecordingReject(), max_consecutive_failures=3)

    # Then it gave up after three, and nothing was lost
    assert lambda_client.keys() == keys[:3]
    assert report.failed == 3 and report.remaining == 5
    assert report.stopped.startswith("3 invokes failed in a row")
    assert [attempts for _, attempts, _ in parked(source)] == [1, 1, 1, 0, 0]


def test_a_payload_lambda_refuses_goes_to_the_dead_letter_queue_not_round_again(
    source: pymysql.connections.Connection,
) -> None:
    # Given a parked change Lambda refuses for its content
    bad, good = park(source, 2)
    reject = RecordingReject()

    # When
    report = sweep(source, ScriptedLambda(errors={bad: client_error("RequestTooLargeException")}), reject)

    # Then it is recorded with the reason and the payload, and deleted; the other is delivered
    assert (report.rejected, report.delivered, report.remaining) == (1, 1, 0)
    [(reason, payload, correlation_id)] = reject.records
    assert "RequestTooLargeException" in reason and reason.startswith("fallback row ")
    assert payload["pk"] == {"id": bad} and payload["action"] == "insert"
    assert correlation_id.startswith("fallback:")
    assert parked(source) == []


def test_a_second_sweeper_returns_at_once_while_one_runs(
    source: pymysql.connections.Connection, db_settings: DatabaseSettings
) -> None:
    # Given parked changes and another sweeper holding the lock
    park(source, 2)
    other = connect(db_settings)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(db_settings.name),))
        lambda_client = ScriptedLambda()

        # When
        report = sweep(source, lambda_client, RecordingReject())

        # Then it did nothing
        assert report.busy and lambda_client.invocations == []
        assert len(parked(source)) == 2
    finally:
        other.close()


def test_the_run_stops_taking_rows_when_time_is_up(source: pymysql.connections.Connection) -> None:
    park(source, 3)
    answers = iter([True, False])

    report = sweep(source, ScriptedLambda(), RecordingReject(), time_left=lambda: next(answers))

    assert (report.delivered, report.remaining, report.stopped) == (1, 2, "out of time")


def test_a_database_without_the_fallback_table_is_nothing_to_do(db_settings: DatabaseSettings) -> None:
    # Given a schema where no migration with a fallback table has run yet
    conn = connect(db_settings)
    try:
        # When
        report = sweep(conn, ScriptedLambda(), RecordingReject())
    finally:
        conn.close()

    # Then
    assert report.delivered == 0 and "does not exist" in report.stopped


def test_status_counts_the_waiting_rows_and_shows_why_they_fail(source: pymysql.connections.Connection) -> None:
    first, second = park(source, 2)
    sweep(source, ScriptedLambda(errors={first: client_error("AccessDeniedException")}), RecordingReject())
    park(source, 1)

    status = fallback_status(source)

    assert (status.waiting, status.failing) == (2, 1)
    assert status.oldest is not None
    [(row_id, attempts, error)] = status.errors
    assert attempts == 1 and "AccessDeniedException" in error
    assert second not in [key for key, _, _ in parked(source)]
