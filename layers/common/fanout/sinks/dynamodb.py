"""DynamoDB sink: one item per row, version-gated by a conditional write (docs/architecture.md, "Versions and sinks").

An item is written only if it is new or its stored ``_version`` is not higher
(``attribute_not_exists(<partition key>) OR _version <= :v``), so late or
duplicated changes lose to newer ones and retries are idempotent. A delete
writes a tombstone item (``_deleted = true``) with a TTL instead of deleting,
so a stale upsert arriving afterwards finds a higher version and cannot
resurrect the row.

A batch of rows is written with ``TransactWriteItems``: each row is the very
``Put`` (same item, same condition) that ``PutItem`` sends alone, up to 100 a
call. BatchWriteItem takes no conditions, and PartiQL cannot express the write:
its INSERT fails on an existing item and its UPDATE fails on a missing one and
only changes the attributes it names, so a tombstone over a row, a dropped
column or a changed projection would leave attributes behind (docs/dynamodb-batches.md).
A transaction is all or nothing, so failures are isolated: a cancelled call
names each row's reason (ConditionalCheckFailed: stale; ValidationError:
rejected; None: not applied, sent again without the others), and a whole-call
ValidationException is split in halves until the offending row stands alone.
Throttling and outages are retried with backoff, then reported as failures for
the fetcher to retry. A batch of one is a plain ``PutItem`` (half the capacity).
A transactional write costs two write units instead of one; ``batch_writes="puts"``
(DYNAMODB_BATCH_WRITES) sends a batch as conditional PutItems instead, 8 in
parallel: one request per row, one unit per KB.

An item that can never be written is refused for that row (RowRejected): one
above DynamoDB's 400 KB item limit (measured here, before sending, as
DynamoDB counts it), one whose key renders empty, or one DynamoDB answers with
ValidationException. A key longer than DynamoDB's limits is bounded, not
refused (fanout.sinks.documents.bounded_sink_id).

Reading back: :func:`read_numbers_exactly` makes a boto3 resource read any N,
however many digits (boto3 alone raises ``decimal.Rounded`` above 38 plain
digits, which an item written by someone else, or by an older fanout, may hold). Throttling and outages are retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from fanout.config import BATCH_PUTS, BATCH_TRANSACTIONS
from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.sinks import Outcome, RowRejected, SinkError
from fanout.sinks.documents import UnrepresentableRow, check_item_size, dynamodb_item, dynamodb_tombstone
from fanout.source.reader import RowState

CONDITION = "attribute_not_exists(#pk) OR #version <= :version"
# DynamoDB's limits for one TransactWriteItems call: 100 actions and 4 MB of items. The byte budget is half
# the limit because the request's JSON (base64 binaries, type tags) is what some endpoints measure.
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 2 * 1024 * 1024
# Calls in flight at once for a batch. Bounded so a batch cannot exhaust the client's connection pool
# (botocore's default max_pool_connections is 10).
MAX_PARALLEL_WRITES = 8
# A transaction retried after throttling, an outage or a conflict: this many calls in all, with full-jitter
# exponential backoff from BACKOFF_SECONDS, before its rows are reported failed (and retried by the queue).
MAX_ATTEMPTS = 6
BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 2.0
# Whole-call errors worth a retry. Anything else is a failure of every row of the call.
RETRYABLE_ERRORS = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

Results = dict[int, Outcome | Exception]  # a transaction's rows, by their place in the batch, to outcomes


@dataclass(frozen=True)
class _Write:
    position: int  # the row's place in the batch
    item: dict[str, Any]
    size: int
    done: Outcome  # WRITTEN or DELETED once applied
    where: str


class DynamoDBSink:
    name = "dynamodb"

    def __init__(
        self,
        table: Any,
        tombstone_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        tables: Callable[[str], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        batch_writes: str = BATCH_TRANSACTIONS,
    ) -> None:
        if batch_writes not in (BATCH_TRANSACTIONS, BATCH_PUTS):
            raise ValueError(f"batch_writes must be {BATCH_TRANSACTIONS!r} or {BATCH_PUTS!r}, got {batch_writes!r}")
        self._batch_writes = batch_writes
        self._table = table  # a boto3 DynamoDB Table resource: the stack's ReplicaTable
        self._tombstone_ttl = tombstone_ttl_seconds
        self._clock = clock
        self._sleep = sleep
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
        write = self._build(mapping, change, state, 0)
        return self._put(mapping, self.table_for(mapping).put_item, write)

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """Each row's conditional write, up to 100 a TransactWriteItems call; per row its Outcome or its
        exception (RowRejected: never writable; anything else: retry), so one row failing spares the others.

        boto3 resources are not thread-safe, clients are: the calls share the Table's client
        (``table.meta.client``, which keeps the resource's serialisation of Python values).
        """
        results: list[Outcome | Exception | None] = [None] * len(items)
        writes: list[_Write] = []
        for position, (change, state) in enumerate(items):
            try:
                writes.append(self._build(mapping, change, state, position))
            except RowRejected as exc:
                results[position] = exc
        table = self.table_for(mapping)
        client = getattr(getattr(table, "meta", None), "client", None)
        if client is None or len(writes) < 2:  # a stand-in Table, or a single row: one PutItem each
            for write in writes:
                results[write.position] = self._outcome_or_error(partial(self._put, mapping, table.put_item, write))
            return _complete(results)
        if self._batch_writes == BATCH_PUTS:
            put = partial(client.put_item, TableName=table.name)  # the client is thread-safe, the Table is not
            submitted = [
                (write, self._threads().submit(self._outcome_or_error, partial(self._put, mapping, put, write)))
                for write in writes
            ]
            for write, pending in submitted:
                results[write.position] = pending.result()
            return _complete(results)
        chunks = _transactions(mapping, writes)
        if len(chunks) == 1:
            results_of = [self._transact(client, table.name, mapping, chunks[0])]
        else:
            futures = [self._threads().submit(self._transact, client, table.name, mapping, chunk) for chunk in chunks]
            results_of = [future.result() for future in futures]
        for chunk_results in results_of:
            for position, outcome in chunk_results.items():
                results[position] = outcome
        return _complete(results)

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_WRITES, thread_name_prefix="dynamodb-sink")
        return self._pool

    # ----------------------------------------------------------------------- building

    def _build(self, mapping: TableMapping, change: Change, state: RowState, position: int) -> _Write:
        where = f"{mapping.table}/{change.document_id}"
        try:
            if state.row is None:
                expires_at = int(self._clock()) + self._tombstone_ttl
                item = dynamodb_tombstone(mapping, change, state.version, expires_at)
                done = Outcome.DELETED
            else:
                item = dynamodb_item(mapping, change, state.row, state.version)
                done = Outcome.WRITTEN
            size = check_item_size(item)
        except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no DynamoDB form
            raise RowRejected(f"DynamoDB cannot hold {where}: {exc}") from exc
        return _Write(position, item, size, done, where)

    @staticmethod
    def _condition(mapping: TableMapping, write: _Write) -> dict[str, Any]:
        return {
            "ConditionExpression": CONDITION,
            "ExpressionAttributeNames": {"#pk": mapping.dynamodb_partition_key.attribute, "#version": "_version"},
            "ExpressionAttributeValues": {":version": write.item["_version"]},
        }

    # ----------------------------------------------------------------------- writing

    @staticmethod
    def _outcome_or_error(call: Callable[[], Outcome]) -> Outcome | Exception:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - reported per row to the fetcher, which decides
            return exc

    def _put(self, mapping: TableMapping, put_item: Callable[..., Any], write: _Write) -> Outcome:
        """One conditional PutItem (``put_item``: a Table's, or its client's bound to the table name)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            put_item(Item=write.item, **self._condition(mapping, write))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return Outcome.STALE
            if code == "ValidationException":
                raise RowRejected(f"DynamoDB refused {write.where}: {exc}") from exc
            raise SinkError(f"DynamoDB rejected {write.where}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise SinkError(f"DynamoDB unavailable for {write.where}: {exc}") from exc
        return write.done

    def _transact(self, client: Any, table_name: str, mapping: TableMapping, writes: list[_Write]) -> Results:
        """One transaction's rows to their outcomes, isolating the rows that fail it."""
        from botocore.exceptions import BotoCoreError, ClientError

        results: Results = {}
        pending = list(writes)
        attempt = 0
        last_error = ""
        while pending:
            try:
                client.transact_write_items(
                    TransactItems=[
                        {"Put": {"TableName": table_name, "Item": write.item, **self._condition(mapping, write)}}
                        for write in pending
                    ]
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "TransactionCanceledException":
                    reasons = exc.response.get("CancellationReasons") or []
                    if len(reasons) != len(pending):
                        reasons = [{"Code": "Unknown"}] * len(pending)  # no per-row answer: retry them all
                    retry: list[_Write] = []
                    transient = False
                    for write, reason in zip(pending, reasons, strict=True):
                        reason_code = reason.get("Code") or "None"
                        if reason_code == "ConditionalCheckFailed":
                            results[write.position] = Outcome.STALE
                        elif reason_code == "ValidationError":
                            results[write.position] = RowRejected(
                                f"DynamoDB refused {write.where}: {reason.get('Message', reason_code)}"
                            )
                        else:  # None: not applied because another row cancelled; else a conflict or throttling
                            retry.append(write)
                            if reason_code != "None":
                                transient = True
                                last_error = f"{reason_code}: {reason.get('Message', '')}"
                    settled = len(retry) < len(pending)
                    pending = retry
                    if settled and not transient:
                        continue  # a row settled: send the others at once
                    last_error = last_error or "the transaction was cancelled with no row at fault"
                elif code == "ValidationException":
                    if len(pending) == 1:
                        results[pending[0].position] = RowRejected(f"DynamoDB refused {pending[0].where}: {exc}")
                        return results
                    half = len(pending) // 2  # one row spoils the call: split until it stands alone
                    results.update(self._transact(client, table_name, mapping, pending[:half]))
                    results.update(self._transact(client, table_name, mapping, pending[half:]))
                    return results
                elif code in RETRYABLE_ERRORS:
                    last_error = f"{code}: {exc}"
                else:
                    return _fail(results, pending, f"DynamoDB rejected the batch: {code}: {exc}")
            except BotoCoreError as exc:
                last_error = f"DynamoDB unavailable: {exc}"
            else:
                for write in pending:
                    results[write.position] = write.done
                return results
            if not pending:
                break
            attempt += 1
            if attempt >= MAX_ATTEMPTS:
                return _fail(results, pending, f"DynamoDB did not take the rows after {attempt} calls: {last_error}")
            self._sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2**attempt)))
        return results


def _transactions(mapping: TableMapping, writes: list[_Write]) -> list[list[_Write]]:
    """The writes cut into TransactWriteItems calls: at most MAX_TRANSACTION_ITEMS and MAX_TRANSACTION_BYTES
    each, and never two writes of one item in a call (DynamoDB refuses that)."""
    key_names = [mapping.dynamodb_partition_key.attribute]
    if mapping.dynamodb_sort_key is not None:
        key_names.append(mapping.dynamodb_sort_key.attribute)
    chunks: list[list[_Write]] = []
    current: list[_Write] = []
    keys: set[tuple[Any, ...]] = set()
    size = 0
    for write in writes:
        key = tuple(write.item[name] for name in key_names)
        full = len(current) >= MAX_TRANSACTION_ITEMS or size + write.size > MAX_TRANSACTION_BYTES
        if current and (full or key in keys):
            chunks.append(current)
            current, keys, size = [], set(), 0
        current.append(write)
        keys.add(key)
        size += write.size
    if current:
        chunks.append(current)
    return chunks


def _fail(results: Results, writes: list[_Write], message: str) -> Results:
    for write in writes:
        results[write.position] = SinkError(f"{message} ({write.where})")
    return results


def _complete(results: list[Outcome | Exception | None]) -> list[Outcome | Exception]:
    assert all(result is not None for result in results), "every row of the batch has an outcome"
    return [result for result in results if result is not None]


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
