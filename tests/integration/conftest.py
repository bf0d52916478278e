"""Fixtures shared by the integration tests (helpers that are plain functions live in support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.support import create_replica_table


@pytest.fixture(scope="module")
def replica_table(local_aws: dict[str, str]) -> Iterator[Any]:
    """A DynamoDB table on ministack with the key schema and TTL template.yaml declares, for one test module."""
    table = create_replica_table(local_aws)
    yield table
    table.delete()
