"""DynamoDB sink: one item per row, version-gated by a conditional write (DESIGN.md §2.3).

An item is written only if it is new or its stored ``_version`` is not higher
(``attribute_not_exists(<partition key>) OR _version <= :v``), so late or
duplicated changes lose to newer ones and retries are idempotent. A delete
writes a tombstone item (``_deleted = true``) with a TTL instead of deleting,
so a stale upsert arriving afterwards finds a higher version and cannot
resurrect the row.

Which table, which key attributes and which columns come from the mapping
(:mod:`fanout.mapping`); the default table is the stack's ReplicaTable.

An item that can never be written is refused for that row (RowRejected): one
above DynamoDB's 400 KB item limit (measured here, before sending, as
DynamoDB counts it), one whose key renders empty, or one DynamoDB answers with
ValidationException. A key longer than DynamoDB's limits is bounded, not
refused (fanout.documents.bounded_sink_id).

Reading back: :func:`read_numbers_exactly` makes a boto3 resource read any N,
however many digits (boto3 alone raises ``decimal.Rounded`` above 38 plain
digits, which an item written by someone else, or by an older fanout, may hold). Throttling and outages are retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from ..change import Change
from ..documents import UnrepresentableRow, check_item_size, dynamodb_item, dynamodb_tombstone
from ..mapping import TableMapping
from ..source_reader import RowState
from . import Outcome, RowRejected, SinkError

CONDITION = "attribute_not_exists(#pk) OR #version <= :version"
# Conditional writes in flight at once for a batch (BatchWriteItem takes no conditions). Bounded so a batch
# cannot exhaust the client's connection pool (botocore's default max_pool_connections is 10).
MAX_PARALLEL_WRITES = 8


class DynamoDBSink:
    name = "dynamodb"

    def __init__(
        self,
        table: Any,
        tombstone_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        tables: Callable[[str], Any] | None = None,
    ) -> None:
        self._table = table  # a boto3 DynamoDB Table resource: the stack's ReplicaTable
        self._tombstone_ttl = tombstone_ttl_seconds
        self._clock = clock
        self._table_named = tables  # Table resources for mappings that name their own table
        self._named: dict[str, Any] = {}
        self._pool: ThreadPoolExecutor | None = None  # created on the first batch, reused after

    def enabled_for(self, mapping: TableMapping) -> bool:
        return mapping.dynamodb_enabled

    def table_for(self, mapping: TableMapping) -> Any:
        name = mapping.dynamodb_table
        if name is None:
            return self._table
        if name not in self._named:
            if self._table_named is None:
                raise SinkError(f"{mapping.table} maps to DynamoDB table {name!r}, but the sink has no other tables")
            self._named[name] = self._table_named(name)
        return self._named[name]

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        return self._write(mapping, change, state)

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """Each row's conditional write, several in parallel; per row its Outcome or its exception
        (RowRejected: never writable; anything else: retry), so one row failing spares the others.

        boto3 resources are not thread-safe, clients are: the threads share the Table's client
        (``table.meta.client``, which keeps the resource's serialisation of Python values).
        """
        table = self.table_for(mapping)
        client = getattr(getattr(table, "meta", None), "client", None)
        if client is None or len(items) < 2:  # a stand-in Table, or nothing to overlap
            return [self._outcome_or_error(mapping, change, state) for change, state in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_WRITES, thread_name_prefix="dynamodb-sink")
        futures = [
            self._pool.submit(self._outcome_or_error, mapping, change, state, (client, table.name))
            for change, state in items
        ]
        return [future.result() for future in futures]

    def _outcome_or_error(
        self, mapping: TableMapping, change: Change, state: RowState, client: tuple[Any, str] | None = None
    ) -> Outcome | Exception:
        try:
            return self._write(mapping, change, state, client)
        except Exception as exc:  # noqa: BLE001 - reported per row to the fetcher, which decides
            return exc

    def _write(
        self, mapping: TableMapping, change: Change, state: RowState, client: tuple[Any, str] | None = None
    ) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"{mapping.table}/{change.document_id}"
        try:
            if state.row is None:
                expires_at = int(self._clock()) + self._tombstone_ttl
                item = dynamodb_tombstone(mapping, change, state.version, expires_at)
                done = Outcome.DELETED
            else:
                item = dynamodb_item(mapping, change, state.row, state.version)
                done = Outcome.WRITTEN
            check_item_size(item)
        except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no DynamoDB form
            raise RowRejected(f"DynamoDB cannot hold {where}: {exc}") from exc
        names = {"#pk": mapping.dynamodb_partition_key.attribute, "#version": "_version"}
        try:
            if client is None:
                self.table_for(mapping).put_item(
                    Item=item,
                    ConditionExpression=CONDITION,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":version": item["_version"]},
                )
            else:  # the Table's client: a resource's client serialises Python values itself, as Table does
                low_level, table_name = client
                low_level.put_item(
                    TableName=table_name,
                    Item=item,
                    ConditionExpression=CONDITION,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":version": item["_version"]},
                )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return Outcome.STALE
            if code == "ValidationException":
                raise RowRejected(f"DynamoDB refused {where}: {exc}") from exc
            raise SinkError(f"DynamoDB rejected {where}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise SinkError(f"DynamoDB unavailable for {where}: {exc}") from exc
        return done


class ExactNumberDeserializer(TypeDeserializer):
    """boto3's TypeDeserializer, but an N becomes the Decimal of all its digits (no 38-digit context)."""

    def _deserialize_n(self, value: str) -> Decimal:
        return Decimal(value)


def read_numbers_exactly(resource: Any) -> Any:
    """Make a boto3 DynamoDB resource (and every Table and client it hands out) read numbers of any length.

    The resource's client deserialises responses in an ``after-call`` handler; this one replaces it with
    the same transformation and an exact deserializer. Values boto3 already read are read the same way.
    """
    from boto3.dynamodb.transform import TransformationInjector

    events = resource.meta.client.meta.events
    injector = TransformationInjector(deserializer=ExactNumberDeserializer())
    events.unregister("after-call.dynamodb", unique_id="dynamodb-attr-value-output")
    events.register(
        "after-call.dynamodb", injector.inject_attribute_value_output, unique_id="dynamodb-attr-value-output"
    )
    return resource
