"""The e2e tests: a row change travels through the app deployed on the local stack.

Every test here carries the ``e2e`` marker (``pytest -m "not e2e"`` leaves them out). ``stack`` is the one
fixture every module uses: the stack deployed with the current code (``local/stack.py up``, once per session)
as a typed :class:`tests.support.e2e.Stack`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.config import StackEnv
from local.stack import up
from tests.support.e2e import Stack

E2E = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def deployed_stack() -> StackEnv:
    """The whole local stack, up and deployed with the current code (idempotent, like `make up`)."""
    return up()


@pytest.fixture(scope="module")
def stack(deployed_stack: StackEnv) -> Iterator[Stack]:
    connected = Stack.connect(deployed_stack)
    yield connected
    connected.close()
