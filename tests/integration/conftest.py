"""Fixtures of the integration tests (real MySQL 8.0, OpenSearch, ministack); the shared ones: tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pymysql
import pytest
from opensearchpy import OpenSearch

from fanout.config import DatabaseSettings
from fanout.model.mapping import Mappings, default_mappings
from fanout.operations.reconcile import SinkReaders
from fanout.sinks.opensearch import OpenSearchSink
from fanout.source.connection import connect
from tests.support.aws import aws_resource, dynamodb_sink
from tests.support.backfill import Harness, apply_checkpoint_migration
from tests.support.indices import delete_index
from tests.support.integration import create_replica_table
from tests.support.mappings import in_index


@pytest.fixture
def harness(db_settings: DatabaseSettings, opensearch_endpoint: str, local_aws: dict[str, str]) -> Iterator[Harness]:
    suffix = uuid.uuid4().hex[:8]
    mappings = Mappings(
        {name: in_index(m, f"{m.opensearch.index}-{suffix}") for name, m in default_mappings().tables.items()}
    )
    apply_checkpoint_migration(db_settings)
    table = create_replica_table(local_aws)
    client = OpenSearch(opensearch_endpoint, timeout=30)
    dynamodb = aws_resource(local_aws, "dynamodb")
    conn, reader = connect(db_settings), connect(db_settings)
    harness = Harness(
        db_settings,
        conn,
        reader,
        mappings,
        client,
        table,
        [OpenSearchSink(client), dynamodb_sink(table, tombstone_ttl_seconds=3600)],
        SinkReaders(client, dynamodb, table.name),
    )
    try:
        yield harness
    finally:
        conn.close()
        reader.close()
        for m in mappings.tables.values():
            delete_index(client, m.opensearch.index)
        table.delete()


@pytest.fixture
def sessions(db_settings: DatabaseSettings) -> Iterator[Callable[..., pymysql.connections.Connection]]:
    """Opens connections to the test's schema with the fetcher's session settings (``sessions(autocommit=False)``
    for a writer; ``lock_wait_timeout`` to override the schema's), each rolled back and closed when the test
    ends, passed or failed: an open transaction left behind would keep its row locks, and its metadata locks
    would hold up the schema's DROP."""
    opened: list[pymysql.connections.Connection] = []

    def open_session(
        *, autocommit: bool = True, lock_wait_timeout: int | None = None
    ) -> pymysql.connections.Connection:
        settings = (
            db_settings if lock_wait_timeout is None else replace(db_settings, lock_wait_timeout=lock_wait_timeout)
        )
        conn = connect(settings, autocommit=autocommit)
        opened.append(conn)
        return conn

    try:
        yield open_session
    finally:
        for conn in reversed(opened):
            if not conn.open:
                continue
            try:
                conn.rollback()
            except pymysql.err.Error:
                pass  # the connection was lost: the server has ended its transaction
            if conn.open:
                conn.close()
