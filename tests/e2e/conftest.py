"""The e2e tests: a row change travels through the app deployed on the local stack.

Every test here carries the ``e2e`` marker (``pytest -m "not e2e"`` leaves them out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fanout.sinks.opensearch import make_client
from local.stack import source_connection
from tests.support.aws import aws_client, aws_resource

E2E = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def deployed_stack() -> dict[str, str]:
    """The whole local stack, up and deployed with the current code (idempotent, like `make up`)."""
    from local.stack import up

    return up()


@pytest.fixture(scope="module")
def stack(deployed_stack: dict[str, str]) -> dict[str, Any]:
    env = deployed_stack
    conn = source_connection(env)
    return {
        "env": env,
        "db": conn,
        "opensearch": make_client(env["OPENSEARCH_ENDPOINT"]),
        "table": aws_resource(env, "dynamodb").Table(env["DYNAMODB_TABLE"]),
        "lambda": aws_client(env, "lambda"),
        "sqs": aws_client(env, "sqs"),
    }
