"""The fetch path built from the environment, once: the fetcher, the maintenance function and the CLI use it.

It builds the one :class:`fanout.pipeline.fetcher.Fetcher` (``FetchPath.fetcher``) from the source database
(re-read from the secret when a login is refused), the sinks (OpenSearch, DynamoDB, and the event bus for the
tables whose mapping turns events on), the reject recorder and, for the fetcher, the
forwarder that hands a continuation on; the clients stay reachable for reconcile's sink readers. The AWS clients
share one botocore Config (:func:`aws_config`), so every caller of the fetch path fails the same way.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from fanout import aws
from fanout.config import HandoffSettings, SinkSettings
from fanout.model.mapping import Mappings, check_dynamodb_tables, check_event_bus, default_mappings
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.sinks import Sink
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.eventbridge import EventBridgeSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import ConnectionHolder
from fanout.source.reader import DatabaseSource


def aws_config() -> Any:
    """The botocore Config of the fetch path's AWS clients (DynamoDB, EventBridge, the dead-letter queue)."""
    from botocore.config import Config

    # The one retry policy of the fetch path: botocore's standard mode retries a call (throttling, 5xx, a
    # timeout) three times, Lambda or the queue retries the invocation, and the sinks re-send only rows a
    # call answered in part (fanout.retry). Each attempt fails fast: botocore's defaults for DynamoDB (10
    # attempts, 60 s connect and read timeouts) kept a call to an endpoint that never answers busy beyond
    # the function's 60 s; three attempts of 5 s are ~15 s (tests/integration/test_dynamodb_batched_writes.py).
    # Requests are not validated against the service model client-side: the fetch path builds them from the
    # mapping and the service validates them anyway (ValidationException), and botocore's walk of every
    # TransactWriteItems item was a sixth of the fetcher's CPU per change (bench/results/fetcher_profile.txt).
    return Config(
        connect_timeout=5,
        read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 3},
        parameter_validation=False,
    )


class FetchPath:
    """The fetcher and the clients it was built from, reused across invocations of one execution environment."""

    def __init__(self, source: str, *, continuations: bool = False) -> None:
        """``source`` names who records the rejects (``rejected_by`` in a dead letter): fetcher, maintenance, cli.

        With ``continuations`` (the fetcher) a change via a relation rebuilds a bounded number of pages of roots
        and hands the rest on through the fetch queue; without, every page is rebuilt at once.
        """
        config = aws_config()
        self.settings = SinkSettings.from_env()
        # validate the mapping at cold start, failing loudly, and the DynamoDB tables it names
        self.mappings: Mappings = default_mappings()
        check_dynamodb_tables(self.mappings, self.settings.granted_dynamodb_tables)
        self.database = ConnectionHolder.from_env()
        self.opensearch = make_client(self.settings.opensearch_endpoint, self.settings.opensearch_auth)
        self._config = config
        self.sinks: list[Sink] = [
            OpenSearchSink(self.opensearch, max_request_bytes=self.settings.opensearch_max_request_bytes),
            DynamoDBSink(
                aws.client("dynamodb", config=config),  # the low-level client: items go as built, not converted
                self.settings.dynamodb_table,
                tombstone_ttl_seconds=self.settings.tombstone_ttl_seconds,
                batch_writes=self.settings.dynamodb_batch_writes,
            ),
        ]
        # The stack always gives the functions its bus; elsewhere (the CLI, tests) without EVENT_BUS_NAME the
        # tables' events are not published, and a backfill asked to publish them refuses (require_events).
        if self.settings.event_bus_name:
            self.sinks.append(EventBridgeSink(aws.client("events", config=config), self.settings.event_bus_name))
        # One SQS client for the dead-letter queue and the fetch queue (a client is thread-safe and names no
        # queue): a second cost ~2 ms of CPU at each cold start, ~15 when its allocations set off a full collection.
        sqs = aws.client("sqs", config=config)
        self.reject = QueueRejectRecorder(sqs, self.settings.dead_letter_queue_url, source=source)
        queue = QueueForwarder(sqs, HandoffSettings.from_env().fetch_queue_url) if continuations else None
        self.fetcher = Fetcher(
            self.mappings, DatabaseSource(self.database), self.sinks, reject=self.reject, continuations=queue
        )

    @cached_property
    def dynamodb(self) -> Any:
        """The DynamoDB resource reconcile's sink readers read items through; built on first use: the fetcher never
        reads, and the resource's model was a tenth of its cold start (bench/results/cold_import.md)."""
        import boto3

        return boto3.resource("dynamodb", config=self._config)

    def without_events(self) -> Fetcher:
        """The fetcher without the event bus: what a backfill writes unless asked to publish (``--events``)."""
        return self.fetcher.without_sink(EventBridgeSink.name)

    def require_events(self) -> None:
        """Refuse to publish events when this environment has no bus but the mapping turns events on."""
        check_event_bus(self.mappings, self.settings.event_bus_name)

    def close(self) -> None:
        self.database.close()
