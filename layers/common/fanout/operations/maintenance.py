"""What backfill and reconcile need, built from the environment: the fetcher's own wiring (fanout.pipeline.wiring).

Used by the ``fanout backfill`` / ``fanout reconcile`` commands and by the
maintenance Lambda (maintenance_fn). Two database connections: one
autocommit connection for the plain reads (key pages, checkpoints, reconcile's
source pages) and the fetch path's own, for its short locking reads.
"""

from __future__ import annotations

from typing import Any

from fanout.model.mapping import Mappings
from fanout.operations.backfill import BackfillJob, BackfillResult, run_backfill
from fanout.operations.reconcile import ReconcileReport, SinkReaders, reconcile
from fanout.pipeline.wiring import FetchPath
from fanout.source.connection import ConnectionHolder


class Maintenance:
    def __init__(self, source: str) -> None:
        self.fetch = FetchPath(source)
        self.mappings: Mappings = self.fetch.mappings
        self.database = ConnectionHolder.from_env()
        self.readers = SinkReaders(self.fetch.opensearch, self.fetch.dynamodb, self.fetch.settings.dynamodb_table)

    def conn(self) -> Any:
        return self.database.get()

    def backfill(self, job: BackfillJob, **options: Any) -> BackfillResult:
        """Run (or resume) ``job`` through this environment's fetch path; ``options`` as for ``run_backfill``."""
        fetch = self.fetch
        return run_backfill(
            self.conn(),
            self.mappings,
            job,
            fetch.read_row,
            fetch.sinks,
            fetch.reject,
            read_rows=fetch.read_rows,
            **options,
        )

    def reconcile(self, **options: Any) -> ReconcileReport:
        """Compare source and sinks, repairs through this environment's fetch path; ``options`` as for
        ``fanout.operations.reconcile.reconcile``."""
        return reconcile(
            self.conn(),
            self.mappings,
            self.readers,
            read_row=self.fetch.read_row,
            sinks=self.fetch.sinks,
            reject=self.fetch.reject,
            **options,
        )

    def close(self) -> None:
        self.database.close()
        self.fetch.close()
