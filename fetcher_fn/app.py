"""Fetcher handler: re-reads each changed row from MySQL and writes it to OpenSearch and DynamoDB.

Domain logic lives in the layer (fanout.pipeline.fetcher); this page wires it to the
database, the sinks and AWS. Direct mode: raising (FetchFailed) makes Lambda
retry the event and, once retries are spent, send it to the dead-letter queue.
Queued mode (an SQS batch): the answer lists the records to retry
(partial batch response); the queue's redrive policy dead-letters them.
Invalid input is recorded in the dead-letter queue once, by the attempt
that is not retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from fanout.config import DatabaseSettings, SinkSettings
from fanout.model.change import CORRELATION_ID, Change
from fanout.model.mapping import TableMapping, check_dynamodb_tables, default_mappings
from fanout.observability import instrumented_handler
from fanout.pipeline.fetcher import apply_changes, parse_fetcher_event
from fanout.pipeline.rejects import HeldRejects, QueueRejectRecorder
from fanout.sinks import Sink
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.compose import resolve_roots
from fanout.source.connection import ConnectionHolder
from fanout.source.reader import RowState, read_row, read_rows


class _Dependencies:
    """Everything the fetcher reuses across invocations of one execution environment."""

    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        # Fail an attempt fast and leave the waiting to Lambda's retries: botocore's defaults for DynamoDB
        # (10 attempts, exponential backoff, 60 s connect and read timeouts) kept one attempt against an
        # unreachable endpoint busy for ~25 s of the function's 60 (tests/integration/test_faults.py).
        aws = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
        sink_settings = SinkSettings.from_env()
        # validate the mapping at cold start, failing loudly, and the DynamoDB tables it names
        check_dynamodb_tables(default_mappings(), sink_settings.granted_dynamodb_tables)
        # Re-read from the secret when a login is refused: the secret may have been rotated.
        self.database = ConnectionHolder(DatabaseSettings.from_env(), reload=DatabaseSettings.from_env)
        dynamodb = boto3.resource("dynamodb", config=aws)
        self.sinks: list[Sink] = [
            OpenSearchSink(
                make_client(sink_settings.opensearch_endpoint, sink_settings.opensearch_auth),
                max_request_bytes=sink_settings.opensearch_max_request_bytes,
            ),
            DynamoDBSink(
                dynamodb.Table(sink_settings.dynamodb_table),
                tombstone_ttl_seconds=sink_settings.tombstone_ttl_seconds,
                tables=dynamodb.Table,
                batch_writes=sink_settings.dynamodb_batch_writes,
            ),
        ]
        self.reject = QueueRejectRecorder(
            boto3.client("sqs", config=aws), sink_settings.dead_letter_queue_url, source="fetcher"
        )

    def read_row(self, mapping: TableMapping, change: Change) -> RowState:
        # A connection found dead (restart, failover, KILL) is replaced and the read repeated once: it is idempotent.
        return self.database.call(lambda conn: read_row(conn, mapping, change))

    def read_rows(self, mapping: TableMapping, changes: Sequence[Change]) -> list[RowState | Exception]:
        # The batch read is as idempotent as the single one: the same once-more on a lost connection.
        return self.database.call(lambda conn: read_rows(conn, mapping, changes))

    def resolve_roots(self, mapping: TableMapping, change: Change) -> list[list[Change]]:
        # The root documents a parent or link-target change touches, in pages (plain reads, no lock).
        return self.database.call(lambda conn: list(resolve_roots(conn, mapping, change)))


@lru_cache(maxsize=1)
def _dependencies() -> _Dependencies:
    return _Dependencies()


def _correlation_id(event: Any, context: Any) -> str:
    """The parser's request id, carried in each change message (one parser invoke: one fetcher event;
    a queued batch logs each change's own id beside it)."""
    records = event.get("Records") if isinstance(event, dict) else None
    if isinstance(records, list) and records and isinstance(records[0], dict):
        body = records[0].get("body")
        try:
            event = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            event = None
    changes = event.get("changes") if isinstance(event, dict) else None
    first = changes[0] if isinstance(changes, list) and changes and isinstance(changes[0], dict) else {}
    carried = first.get("correlation_id")
    # Set before the event is validated, so held to the same rule: it goes on every log line.
    ok = isinstance(carried, str) and carried and CORRELATION_ID.fullmatch(carried)
    return carried if ok else str(context.aws_request_id)


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    deps = _dependencies()
    mappings = default_mappings()
    if isinstance(event, dict) and "Records" in event:  # FetchMode=queued: a batch from the fetch queue
        from fanout.pipeline.fetch_queue import handle_queue_batch

        return handle_queue_batch(
            event,
            context,
            mappings,
            deps.read_row,
            deps.sinks,
            deps.reject,
            read_rows=deps.read_rows,
            resolve_roots=deps.resolve_roots,
        )
    # Rejections wait for the outcome: a failed event is retried whole (then dead-lettered whole), and
    # recording them on every attempt wrote one dead letter per retry.
    held = HeldRejects()
    changes, rejected = parse_fetcher_event(event, mappings, held, context.aws_request_id)
    report = apply_changes(
        changes, mappings, deps.read_row, deps.sinks, held, read_rows=deps.read_rows, resolve_roots=deps.resolve_roots
    )
    held.record_with(deps.reject)
    report.rejected = rejected
    return report.as_dict()
