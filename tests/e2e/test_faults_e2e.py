"""Faults on the deployed local stack, and what the deployed functions are given.

- The lambda_async bridge (what Aurora's native ``lambda_async`` is locally) is killed
  with SIGKILL while a burst of writes is being delivered; the application keeps
  writing; the bridge is restarted (local/stack.py). Every change still reaches both
  sinks through the deployed parser and fetcher.
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
from typing import Any

import pytest

from fanout.capture.names import CHANGE_LOG_TABLE, drain_lock_name
from local.stack import LocalConfig, ensure_bridge, running_pid
from tests.conftest import aws_client
from tests.e2e.test_pipeline import agreed, stack, wait_until

__all__ = ["stack"]  # the deployed-stack fixture, shared with test_pipeline

OUTBOX = "fanout_lambda_async_outbox"


@pytest.fixture
def rows(stack: dict[str, Any]) -> Iterator[list[int]]:
    keys: list[int] = []
    yield keys
    with stack["db"].cursor() as cur:
        for key in keys:
            cur.execute("DELETE FROM posts WHERE id = %s", (key,))


def insert(stack: dict[str, Any], rows: list[int], n: int, label: str) -> list[int]:
    new = []
    with stack["db"].cursor() as cur:
        for i in range(n):
            cur.execute(
                "INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'bridge')",
                (f"{label} {i} {uuid.uuid4().hex[:6]}",),
            )
            new.append(int(cur.lastrowid))
    rows.extend(new)
    return new


def no_drainer(stack: dict[str, Any]) -> bool:
    with stack["db"].cursor() as cur:
        cur.execute("SELECT IS_FREE_LOCK(%s)", (drain_lock_name(stack["env"]["DB_NAME"]),))
        return bool(cur.fetchone()[0])


def waiting_in_change_log(stack: dict[str, Any]) -> int:
    with stack["db"].cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {CHANGE_LOG_TABLE}")  # noqa: S608 - a constant
        return int(cur.fetchone()[0])


def waiting_in_outbox(stack: dict[str, Any]) -> int:
    with stack["db"].cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {OUTBOX}")  # noqa: S608 - a constant
        return int(cur.fetchone()[0])


def test_the_bridge_killed_mid_burst_and_restarted_loses_no_change(stack: dict[str, Any], rows: list[int]) -> None:
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
        second = insert(stack, rows, 2, "while down")
        with stack["db"].cursor() as cur:
            for key in first[:1]:
                cur.execute(
                    "UPDATE posts SET status = 'published', title = CONCAT(title, ' (edited)') WHERE id = %s", (key,)
                )
            for key in first[1:2]:
                cur.execute("DELETE FROM posts WHERE id = %s", (key,))

        # Then those changes wait in the change log and their statements' rings in the outbox (nothing delivers
        # them, nothing drops them): one ring per statement, none lost
        assert waiting_in_change_log(stack) >= len(second) + 1 + 1
        assert waiting_in_outbox(stack) >= len(second) + 1 + 1
    finally:
        # When the bridge is restarted
        ensure_bridge(LocalConfig.from_env(), restart=True)

    # Then every change arrives: each row is in both sinks as in MariaDB, each deleted row in neither
    for key in rows:
        wait_until(f"row {key} to agree in both sinks", lambda key=key: agreed(stack, key))
    wait_until(
        "the outbox and the change log to be drained",
        lambda: waiting_in_outbox(stack) + waiting_in_change_log(stack) == 0,
    )


FUNCTIONS = ("PARSER", "FETCHER", "SWEEPER", "MIGRATIONS")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_deployed_functions_hold_no_secret_and_run_with_their_own_role(
    stack: dict[str, Any], function: str
) -> None:
    env = stack["env"]
    lambda_client = aws_client(env, "lambda")
    configuration = lambda_client.get_function_configuration(FunctionName=env[f"{function}_FUNCTION_NAME"])

    variables = configuration.get("Environment", {}).get("Variables", {})
    assert "DB_PASSWORD" not in variables and "DB_USER" not in variables
    if function != "PARSER":
        assert variables["DB_SECRET_ARN"] == env["DB_SECRET_ARN"] and variables["DB_TLS"] == "off"
    role_name = configuration["Role"].rsplit("/", 1)[-1]
    role = aws_client(env, "iam").get_role(RoleName=role_name)["Role"]
    assert f"{function.title()}Role" in role["RoleName"]
    assert aws_client(env, "iam").list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
