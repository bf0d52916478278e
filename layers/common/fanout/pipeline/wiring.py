"""The fetch path built from the environment, once: the fetcher, the maintenance function and the CLI use it.

It holds the source database (re-read from the secret when a login is refused), both sinks, the
reject recorder, ``read_row`` / ``read_rows`` over the database, and the fan-out of changes via a composed
document's relation (``fan_out``: a page of roots over the database and, for the fetcher, the forwarder that hands
a continuation on); the AWS clients share one botocore Config (:func:`aws_config`), so every caller of the fetch
path fails the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fanout.config import HandoffSettings, SinkSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping, check_dynamodb_tables, default_mappings
from fanout.pipeline.forwarder import make_forwarder
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.pipeline.related import FanOut
from fanout.sinks import Sink
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.composition_read import root_page
from fanout.source.connection import ConnectionHolder
from fanout.source.reader import read_row, read_rows
from fanout.source.rows import RowState


def aws_config() -> Any:
    """The botocore Config of the fetch path's AWS clients (DynamoDB, the dead-letter queue)."""
    from botocore.config import Config

    # The one retry policy of the fetch path: botocore's standard mode retries a call (throttling, 5xx, a
    # timeout) three times, Lambda or the queue retries the invocation, and the sinks re-send only rows a
    # call answered in part (fanout.retry). Each attempt fails fast: botocore's defaults for DynamoDB (10
    # attempts, 60 s connect and read timeouts) kept a call to an endpoint that never answers busy beyond
    # the function's 60 s; three attempts of 5 s are ~15 s (tests/integration/test_dynamodb_batched_writes.py).
    return Config(connect_timeout=5, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})


class FetchPath:
    """Everything a fetch needs, reused across invocations of one execution environment."""

    def __init__(self, source: str, *, continuations: bool = False) -> None:
        """``source`` names who records the rejects (``rejected_by`` in a dead letter): fetcher, maintenance, cli.

        With ``continuations`` (the fetcher) a change via a relation rebuilds a bounded number of pages of roots
        and hands the rest on through the fetch queue; without, every page is rebuilt at once.
        """
        import boto3

        config = aws_config()
        self.settings = SinkSettings.from_env()
        # validate the mapping at cold start, failing loudly, and the DynamoDB tables it names
        self.mappings: Mappings = default_mappings()
        check_dynamodb_tables(self.mappings, self.settings.granted_dynamodb_tables)
        self.database = ConnectionHolder.from_env()
        self.opensearch = make_client(self.settings.opensearch_endpoint, self.settings.opensearch_auth)
        self.dynamodb = boto3.resource("dynamodb", config=config)
        self.sinks: list[Sink] = [
            OpenSearchSink(self.opensearch, max_request_bytes=self.settings.opensearch_max_request_bytes),
            DynamoDBSink(
                self.dynamodb.Table(self.settings.dynamodb_table),
                tombstone_ttl_seconds=self.settings.tombstone_ttl_seconds,
                tables=self.dynamodb.Table,
                batch_writes=self.settings.dynamodb_batch_writes,
            ),
        ]
        self.reject = QueueRejectRecorder(
            boto3.client("sqs", config=config), self.settings.dead_letter_queue_url, source=source
        )
        forward = make_forwarder(HandoffSettings.from_env(), config) if continuations else None
        self.fan_out = FanOut(self.root_page, forward)

    def read_row(self, mapping: TableMapping, change: Change) -> RowState:
        # A connection found dead (restart, failover, KILL) is replaced and the read repeated once: it is idempotent.
        return self.database.call(lambda conn: read_row(conn, mapping, change))

    def read_rows(self, mapping: TableMapping, changes: Sequence[Change]) -> list[RowState | Exception]:
        # The batch read is as idempotent as the single one: the same once-more on a lost connection.
        return self.database.call(lambda conn: read_rows(conn, mapping, changes))

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        # A page of the root documents a parent or link-target change touches (a plain read, no lock).
        return self.database.call(lambda conn: root_page(conn, mapping, change, page_size))

    def close(self) -> None:
        self.database.close()
