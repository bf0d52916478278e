"""Faults on the deployed local stack, and what the deployed functions are given.

- The lambda_async bridge (where the local ``lambda_async`` loadable function hands its
  calls) is killed with SIGKILL while a burst of writes is being delivered: lambda_async
  then fails as Aurora's does when Lambda cannot be reached, the triggers' handler swallows
  it, and the application keeps writing; its changes wait in the change log. The bridge is
  restarted (local/stack.py restart bridge) and the sweeper drains the log: every change
  still reaches both sinks through the deployed parser and fetcher.
- The deployed functions hold no secret in their environment and run with the roles
  the template gives them.

(OpenSearch down, Lambda's retries, the dead-letter queue and redrive, on this stack:
tests/e2e/test_operations.py. DynamoDB, database and fetcher faults: tests/integration/test_faults.py.)
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from fanout.capture.names import CHANGE_LOG_TABLE, drain_lock_name
from local.config import LocalConfig
from local.processes import running_pid
from local.services import ensure_lambda_async_bridge
from tests.support.e2e import Stack, post
from tests.support.waiting import wait_until


@pytest.fixture
def rows(stack: Stack) -> Iterator[list[int]]:
    keys: list[int] = []
    yield keys
    for key in keys:
        stack.sql("DELETE FROM posts WHERE id = %s", key)


def insert(stack: Stack, rows: list[int], n: int, label: str) -> list[int]:
    new = [stack.sql("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'bridge')",
                     f"{label} {i} {uuid.uuid4().hex[:6]}") for i in range(n)]  # fmt: skip
    rows.extend(new)
    return new


def no_drainer(stack: Stack) -> bool:
    with stack.db.cursor() as cur:
        cur.execute("SELECT IS_FREE_LOCK(%s)", (drain_lock_name(stack.env.db_name),))
        return bool(cur.fetchone()[0])


def waiting_in_change_log(stack: Stack) -> int:
    with stack.db.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {CHANGE_LOG_TABLE}")  # noqa: S608 - a constant
        return int(cur.fetchone()[0])


def ring_error(stack: Stack) -> str | None:
    """What the last failed ring of the session said (the triggers' handler keeps it in @fanout_ring_error)."""
    with stack.db.cursor() as cur:
        cur.execute("SELECT @fanout_ring_error")
        value = cur.fetchone()[0]
        return value.decode() if isinstance(value, bytes) else value


def test_the_bridge_killed_mid_burst_and_restarted_loses_no_change(stack: Stack, rows: list[int]) -> None:
    pid = running_pid("bridge")
    assert pid, "the local stack's bridge is not running"
    try:
        # Given a burst of writes being delivered
        first = insert(stack, rows, 4, "burst")

        # When the bridge crashes in the middle of it, and, once no drainer is at work (a drainer rung before
        # the crash lingers a while and would take the new rows without a ring), the application goes on writing
        os.killpg(pid, signal.SIGKILL)
        wait_until("the bridge to be gone", lambda: running_pid("bridge") is None, timeout=10)
        wait_until("no drainer at work", lambda: no_drainer(stack))
        stack.sql("SET @fanout_ring_error = NULL")
        second = insert(stack, rows, 2, "while down")
        stack.sql("UPDATE posts SET status = 'published', title = CONCAT(title, ' (edited)') WHERE id = %s", first[0])
        stack.sql("DELETE FROM posts WHERE id = %s", first[1])

        # Then every statement succeeded although its lambda_async failed (the triggers' handler kept the error),
        # and the changes wait in the change log: nothing delivered them, nothing dropped them
        assert "Lambda API returned error" in (ring_error(stack) or ""), ring_error(stack)
        assert waiting_in_change_log(stack) >= len(second) + 1 + 1
    finally:
        # When the bridge is restarted
        ensure_lambda_async_bridge(LocalConfig.from_env(), restart=True)

    # and the sweeper runs (the schedule runs it every minute; invoked here so the test need not wait for it)
    response, report = stack.invoke(stack.env.sweeper_function_name, {})
    assert "FunctionError" not in response and report["busy"] is False, report

    # Then every change arrives: each row is in both sinks as in MySQL, each deleted row in neither
    for key in rows:
        wait_until(f"row {key} to agree in both sinks", lambda key=key: stack.agreed(post(key)))
    wait_until("the change log to be drained", lambda: waiting_in_change_log(stack) == 0)


FUNCTIONS = ("PARSER", "FETCHER", "SWEEPER", "MIGRATIONS")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_deployed_functions_hold_no_secret_and_run_with_their_own_role(stack: Stack, function: str) -> None:
    env = stack.env.environ()
    configuration = stack.lambda_client.get_function_configuration(FunctionName=env[f"{function}_FUNCTION_NAME"])

    variables = configuration.get("Environment", {}).get("Variables", {})
    assert "DB_PASSWORD" not in variables and "DB_USER" not in variables
    if function != "PARSER":
        assert variables["DB_SECRET_ARN"] == env["DB_SECRET_ARN"] and variables["DB_TLS"] == "off"
    role_name = configuration["Role"].rsplit("/", 1)[-1]
    iam = stack.client("iam")
    role = iam.get_role(RoleName=role_name)["Role"]
    assert f"{function.title()}Role" in role["RoleName"]
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    # no AWS managed policy (AWSLambdaBasicExecutionRole allows logs on "*"): the stack's own baseline policy only
    assert [p["PolicyName"] for p in attached if "-FunctionBaselinePolicy-" not in p["PolicyName"]] == []
