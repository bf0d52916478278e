"""What backfill and reconcile need, built from the environment: the same wiring as the fetcher's.

Used by the ``fanout backfill`` / ``fanout reconcile`` commands and by the
maintenance Lambda (maintenance_fn). Two database connections: one
autocommit connection for the plain reads (key pages, checkpoints, reconcile's
source pages) and the fetch path's own, for its short locking reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fanout.config import DatabaseSettings, SinkSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping, check_dynamodb_tables, default_mappings
from fanout.operations.backfill import BackfillJob, BackfillResult, run_backfill
from fanout.operations.reconcile import ReconcileReport, SinkReaders, reconcile
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.sinks import Sink
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import ConnectionHolder
from fanout.source.reader import RowState, read_row, read_rows


class Maintenance:
    def __init__(self, source: str) -> None:
        import boto3

        settings = SinkSettings.from_env()
        self.mappings: Mappings = default_mappings()
        check_dynamodb_tables(self.mappings, settings.granted_dynamodb_tables)
        self.database = ConnectionHolder(DatabaseSettings.from_env(), reload=DatabaseSettings.from_env)
        self.fetch_database = ConnectionHolder(DatabaseSettings.from_env(), reload=DatabaseSettings.from_env)
        dynamodb = boto3.resource("dynamodb")
        opensearch = make_client(settings.opensearch_endpoint, settings.opensearch_auth)
        self.sinks: list[Sink] = [
            OpenSearchSink(opensearch, max_request_bytes=settings.opensearch_max_request_bytes),
            DynamoDBSink(
                dynamodb.Table(settings.dynamodb_table),
                tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                tables=dynamodb.Table,
                batch_writes=settings.dynamodb_batch_writes,
            ),
        ]
        self.readers = SinkReaders(opensearch, dynamodb, settings.dynamodb_table)
        self.reject = QueueRejectRecorder(boto3.client("sqs"), settings.dead_letter_queue_url, source=source)

    def conn(self) -> Any:
        return self.database.get()

    def read_row(self, mapping: TableMapping, change: Change) -> RowState:
        # as the fetcher: a lost connection is replaced and the (idempotent) read repeated once
        return self.fetch_database.call(lambda conn: read_row(conn, mapping, change))

    def read_rows(self, mapping: TableMapping, changes: Sequence[Change]) -> list[RowState | Exception]:
        return self.fetch_database.call(lambda conn: read_rows(conn, mapping, changes))

    def backfill(self, job: BackfillJob, **options: Any) -> BackfillResult:
        """Run (or resume) ``job`` through this environment's fetch path; ``options`` as for ``run_backfill``."""
        return run_backfill(
            self.conn(), self.mappings, job, self.read_row, self.sinks, self.reject, read_rows=self.read_rows, **options
        )

    def reconcile(self, **options: Any) -> ReconcileReport:
        """Compare source and sinks, repairs through this environment's fetch path; ``options`` as for
        ``fanout.operations.reconcile.reconcile``."""
        return reconcile(
            self.conn(),
            self.mappings,
            self.readers,
            read_row=self.read_row,
            sinks=self.sinks,
            reject=self.reject,
            **options,
        )

    def close(self) -> None:
        self.database.close()
        self.fetch_database.close()
