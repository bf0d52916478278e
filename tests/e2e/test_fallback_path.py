"""When lambda_async fails, writes still succeed and still reach both sinks: the sweeper's ring, end to end.

The lambda_async bridge is told to fail every call to the deployed parser's ARN, so the loadable function fails
the way Aurora's native function does when Lambda cannot be reached (ERROR 1873 in the statement). The triggers'
handler swallows it and each change still waits in ``fanout_change_log``; the deployed SweeperFunction (or
``fanout sweep``) rings the parser, which drains the log, and the pipeline does the rest.

The sweeper also runs every minute on its schedule. While a test writes and looks at
the logged rows it holds the sweepers' lock, so a scheduled run cannot ring under its
feet; the assertions after the sweep are on the end state, whoever swept.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from fanout.capture.names import CHANGE_LOG_TABLE, drain_lock_name, sweep_lock_name
from fanout_cli.main import main
from tests.support.e2e import Stack, post
from tests.support.waiting import wait_until

UNREACHABLE = "ServiceException: Lambda is unreachable (test)"


@pytest.fixture
def writer(stack: Stack) -> Iterator[Any]:
    """An application session while every lambda_async call to the deployed parser fails."""
    arn = stack.env.parser_function_arn
    stack.bridge.configure(arn, fail=UNREACHABLE)
    conn = stack.connection()
    try:
        yield conn
    finally:
        conn.close()
        stack.bridge.reset(arn)


def rings_failed(stack: Stack, since: int) -> list[str]:
    """The outcomes of the calls to the deployed parser's ARN after the first ``since`` the bridge remembers."""
    return [call["outcome"] for call in stack.bridge.calls(stack.env.parser_function_arn)[since:]]


@pytest.fixture
def sweepers_held_off(stack: Stack) -> Iterator[pymysql.connections.Connection]:
    """Holds the sweepers' lock until released (or the test ends), so no scheduled sweep rings the parser
    meanwhile. Taking the drain lease first waits out a drainer still lingering from an earlier test (it holds the
    lease for a moment after its last batch and would otherwise claim this test's changes as they commit)."""
    conn = stack.connection()
    schema = stack.env.db_name
    try:
        with conn.cursor() as cur:
            for name in (sweep_lock_name(schema), drain_lock_name(schema)):
                cur.execute("SELECT GET_LOCK(%s, 10)", (name,))
                assert cur.fetchone()[0] == 1, name
            # A drain lease held would stop the triggers from ringing at all; free, they ring, and the ring fails
            cur.execute("DO RELEASE_LOCK(%s)", (drain_lock_name(schema),))
        yield conn
    finally:
        conn.close()


def release(holder: pymysql.connections.Connection, schema: str) -> None:
    with holder.cursor() as cur:
        for name in (sweep_lock_name(schema), drain_lock_name(schema)):
            cur.execute("DO RELEASE_LOCK(%s)", (name,))


def parked_keys(conn: pymysql.connections.Connection, keys: list[int]) -> list[tuple[str, int]]:
    """(action, key) of the changes for ``keys`` waiting in the change log, oldest first."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT payload FROM {CHANGE_LOG_TABLE} ORDER BY id")
        payloads = [json.loads(p) for (p,) in cur.fetchall()]
    return [(p["action"], p["pk"]["id"]) for p in payloads if p["table"] == "posts" and p["pk"]["id"] in keys]


def write_while_lambda_is_down(writer: pymysql.connections.Connection, cleanup: list[int]) -> tuple[int, int, str]:
    """Insert and update one row, insert and delete another; return (kept, deleted, title)."""
    title = f"fallback {uuid.uuid4().hex[:8]} — café"
    with writer.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'parked', 'zoë')", (title,))
        kept = int(cur.lastrowid)
        cur.execute("UPDATE posts SET status = 'published' WHERE id = %s", (kept,))
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('short-lived', 'b', 'a')")
        deleted = int(cur.lastrowid)
        cur.execute("DELETE FROM posts WHERE id = %s", (deleted,))
    cleanup.extend([kept, deleted])
    return kept, deleted, title


@pytest.fixture
def cleanup(stack: Stack) -> Iterator[list[int]]:
    ids: list[int] = []
    yield ids
    for key in ids:
        stack.sql("DELETE FROM posts WHERE id = %s", key)


def assert_replicated(stack: Stack, kept: int, deleted: int, title: str) -> None:
    wait_until("the parked insert and update in OpenSearch", lambda: (stack.document(post(kept)) or {}).get("status"))
    wait_until("the parked insert and update to agree", lambda: stack.agreed(post(kept)))
    document = stack.document(post(kept)) or {}
    assert document["title"] == title and document["status"] == "published"
    assert (stack.item(post(kept)) or {})["author"] == "zoë"
    wait_until("the parked delete as a DynamoDB tombstone", lambda: (stack.item(post(deleted)) or {}).get("_deleted"))
    assert stack.document(post(deleted)) is None


def test_writes_succeed_and_reach_both_sinks_through_the_sweeper_functions_ring(
    stack: Stack,
    writer: pymysql.connections.Connection,
    sweepers_held_off: pymysql.connections.Connection,
    cleanup: list[int],
) -> None:
    env = stack.env
    calls_before = len(stack.bridge.calls(env.parser_function_arn))

    # When the application writes while every lambda_async fails
    kept, deleted, title = write_while_lambda_is_down(writer, cleanup)

    # Then its statements succeeded although their rings failed, and the changes wait in the change log
    outcomes = rings_failed(stack, calls_before)
    assert outcomes and all(outcome == f"ERR {UNREACHABLE}" for outcome in outcomes), outcomes
    with writer.cursor() as cur:
        cur.execute("SELECT title, status FROM posts WHERE id IN (%s, %s)", (kept, deleted))
        assert cur.fetchall() == ((title, "published"),)
    assert parked_keys(writer, [kept, deleted]) == [
        ("insert", kept),
        ("update", kept),
        ("insert", deleted),
        ("delete", deleted),
    ]

    # When the deployed sweeper runs
    release(sweepers_held_off, env.db_name)
    response, report = stack.invoke(env.sweeper_function_name, {})
    assert "FunctionError" not in response, report
    assert report["busy"] is False and report["depth"] >= 4

    # Then the changes reached OpenSearch and DynamoDB, and nothing is left parked
    assert_replicated(stack, kept, deleted, title)
    assert parked_keys(writer, [kept, deleted]) == []


def test_fanout_sweep_rings_the_parser_from_the_command_line(
    stack: Stack,
    writer: pymysql.connections.Connection,
    sweepers_held_off: pymysql.connections.Connection,
    cleanup: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given changes parked while Lambda was down, and the stack's environment (.local/stack.env)
    kept, deleted, title = write_while_lambda_is_down(writer, cleanup)
    assert len(parked_keys(writer, [kept, deleted])) == 4
    env = stack.env.environ()
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "DB_HOST"):
        monkeypatch.setenv(key, env[key])
    for key in ("DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME", "PARSER_FUNCTION_NAME"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)

    # When an operator runs `fanout sweep`
    release(sweepers_held_off, stack.env.db_name)
    assert main(["sweep"]) == 0
    assert "the parser was rung to drain them" in capsys.readouterr().out

    # Then
    assert_replicated(stack, kept, deleted, title)
    assert parked_keys(writer, [kept, deleted]) == []


def test_the_sweeper_is_scheduled_every_minute(stack: Stack) -> None:
    events = stack.client("events")
    sweeper = stack.lambda_client.get_function(FunctionName=stack.env.sweeper_function_name)
    sweeper_arn = sweeper["Configuration"]["FunctionArn"]

    [rule_name] = events.list_rule_names_by_target(TargetArn=sweeper_arn)["RuleNames"]
    rule = events.describe_rule(Name=rule_name)

    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")


def test_aurora_setup_reads_the_role_from_the_deployed_stack(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = stack.env.environ()
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])

    assert main(["aurora-setup", "--db-user", "fanout", "--cluster", "c1", "--stack-name", stack.env.stack_name]) == 0

    assert f"--role-arn {stack.env.aurora_invoke_role_arn}" in capsys.readouterr().out
