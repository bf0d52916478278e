"""When lambda_async fails, writes still succeed and still reach both sinks: the sweeper's ring, end to end.

The writing session sets ``@fanout_shim_fail = 1``, so the shim fails the way Aurora's
native function does when Lambda cannot be reached (ERROR 1873). The triggers still log
each change in ``fanout_change_log`` (their ring fails); the deployed SweeperFunction (or
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
from local.stack import source_connection
from tests.support.aws import aws_client
from tests.support.e2e import agreed, document, item, wait_until


def db(env: dict[str, str]) -> pymysql.connections.Connection:
    return source_connection(env)  # type: ignore[no-any-return]


@pytest.fixture
def writer(stack: dict[str, Any]) -> Iterator[pymysql.connections.Connection]:
    """An application session whose lambda_async calls fail."""
    conn = db(stack["env"])
    with conn.cursor() as cur:
        cur.execute("SET @fanout_shim_fail = 1")
    yield conn
    conn.close()


@pytest.fixture
def sweepers_held_off(stack: dict[str, Any]) -> Iterator[pymysql.connections.Connection]:
    """Holds the sweepers' lock and the drain lease until released (or the test ends), so no sweep runs
    meanwhile. Taking the lease waits out a drainer still lingering from an earlier test (it holds the lease
    for a moment after its last batch and would otherwise claim this test's changes as they commit)."""
    conn = db(stack["env"])
    schema = stack["env"]["DB_NAME"]
    with conn.cursor() as cur:
        for name in (sweep_lock_name(schema), drain_lock_name(schema)):
            cur.execute("SELECT GET_LOCK(%s, 10)", (name,))
            assert cur.fetchone()[0] == 1, name
    yield conn
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
def cleanup(stack: dict[str, Any]) -> Iterator[list[int]]:
    ids: list[int] = []
    yield ids
    with stack["db"].cursor() as cur:
        for key in ids:
            cur.execute("DELETE FROM posts WHERE id = %s", (key,))


def assert_replicated(stack: dict[str, Any], kept: int, deleted: int, title: str) -> None:
    wait_until("the parked insert and update in OpenSearch", lambda: (document(stack, kept) or {}).get("status"))
    wait_until("the parked insert and update to agree", lambda: agreed(stack, kept))
    assert document(stack, kept)["title"] == title and document(stack, kept)["status"] == "published"
    assert item(stack, kept)["author"] == "zoë"
    wait_until("the parked delete as a DynamoDB tombstone", lambda: (item(stack, deleted) or {}).get("_deleted"))
    assert document(stack, deleted) is None


def test_writes_succeed_and_reach_both_sinks_through_the_sweeper_functions_ring(
    stack: dict[str, Any],
    writer: pymysql.connections.Connection,
    sweepers_held_off: pymysql.connections.Connection,
    cleanup: list[int],
) -> None:
    env = stack["env"]

    # When the application writes while every lambda_async fails
    kept, deleted, title = write_while_lambda_is_down(writer, cleanup)

    # Then its statements succeeded, and the changes wait in the change log
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
    release(sweepers_held_off, env["DB_NAME"])
    response = stack["lambda"].invoke(FunctionName=env["SWEEPER_FUNCTION_NAME"], Payload=b"{}")
    assert "FunctionError" not in response, response["Payload"].read()
    report = json.loads(response["Payload"].read())
    assert report["busy"] is False and report["depth"] >= 4

    # Then the changes reached OpenSearch and DynamoDB, and nothing is left parked
    assert_replicated(stack, kept, deleted, title)
    assert parked_keys(writer, [kept, deleted]) == []


def test_fanout_sweep_rings_the_parser_from_the_command_line(
    stack: dict[str, Any],
    writer: pymysql.connections.Connection,
    sweepers_held_off: pymysql.connections.Connection,
    cleanup: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given changes parked while Lambda was down, and the stack's environment (.local/stack.env)
    kept, deleted, title = write_while_lambda_is_down(writer, cleanup)
    assert len(parked_keys(writer, [kept, deleted])) == 4
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "DB_HOST"):
        monkeypatch.setenv(key, stack["env"][key])
    for key in ("DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME", "PARSER_FUNCTION_NAME"):
        monkeypatch.setenv(key, stack["env"][key])
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)

    # When an operator runs `fanout sweep`
    release(sweepers_held_off, stack["env"]["DB_NAME"])
    assert main(["sweep"]) == 0
    assert "the parser was rung to drain them" in capsys.readouterr().out

    # Then
    assert_replicated(stack, kept, deleted, title)
    assert parked_keys(writer, [kept, deleted]) == []


def test_the_sweeper_is_scheduled_every_minute(stack: dict[str, Any]) -> None:
    env = stack["env"]
    events = aws_client(env, "events")
    sweeper_arn = stack["lambda"].get_function(FunctionName=env["SWEEPER_FUNCTION_NAME"])["Configuration"][
        "FunctionArn"
    ]

    [rule_name] = events.list_rule_names_by_target(TargetArn=sweeper_arn)["RuleNames"]
    rule = events.describe_rule(Name=rule_name)

    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")


def test_aurora_setup_reads_the_role_from_the_deployed_stack(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack["env"][key])

    assert (
        main(["aurora-setup", "--db-user", "fanout", "--cluster", "c1", "--stack-name", stack["env"]["STACK_NAME"]])
        == 0
    )

    assert f"--role-arn {stack['env']['AURORA_INVOKE_ROLE_ARN']}" in capsys.readouterr().out
