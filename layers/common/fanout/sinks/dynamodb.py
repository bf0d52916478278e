"""DynamoDB sink: one item per row, version-gated by a conditional write (docs/architecture.md, "Versions and sinks").

(About 500 lines, one module on purpose: the item it builds, that item's measured size and its conditional
write are one contract; what both sinks share is in fanout.sinks, ids and keys in fanout.model.sink_keys.)

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
Throttling and outages of a whole call are botocore's to retry, then reported as
failures for the fetcher to retry. A batch of one is a plain ``PutItem`` (half the capacity).
A transactional write costs two write units instead of one; ``batch_writes="puts"``
(DYNAMODB_BATCH_WRITES) sends a batch as conditional PutItems instead, 8 in
parallel: one request per row, one unit per KB.

An item that can never be written is refused for that row (RowRejected): one
above DynamoDB's 400 KB item limit (measured here, before sending, as
DynamoDB counts it), one whose key renders empty, or one DynamoDB answers with
ValidationException. A key longer than DynamoDB's limits is bounded, not
refused (fanout.model.sink_keys.bounded_sink_id).

The item (:func:`dynamodb_item`, :func:`dynamodb_tombstone`): the row's projected, renamed columns, each
value in its DynamoDB form (:func:`to_dynamodb_value`, the table in :mod:`fanout.sinks`), the key
attributes (and ``_fanout_key`` when one is bounded) and the bookkeeping ``_table``, ``_version``,
``_deleted`` (a tombstone: ``_ttl``).

The sink writes through the low-level DynamoDB client: each item is turned into attribute values
(:func:`attribute_values`) once, when it is built, and sent as is. boto3's resource layer would copy every
request and walk every item again to convert it, which cost more CPU than the rest of the fetcher
(bench/results/fetcher_profile.txt).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from functools import partial
from typing import Any

from fanout.config import BATCH_PUTS, BATCH_TRANSACTIONS
from fanout.model.change import Change
from fanout.model.mapping import FULL_KEY_FIELD, TableMapping
from fanout.model.sink_keys import UnrepresentableRow, bounded_dynamodb_key, dynamodb_full_key
from fanout.retry import attempts
from fanout.sinks import Outcome, Relation, RowRejected, SinkError, parsed_json, relation_value, temporal_text
from fanout.sinks.dynamodb_wire import send_transactions_as_built
from fanout.source.rows import JsonText, RowState

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
# DynamoDB's numbers (note (2) of fanout.sinks): at most 38 significant digits, magnitudes from 1E-130 ...
DYNAMODB_NUMBER_DIGITS = 38
DYNAMODB_MIN_EXPONENT = -130
# ... up to 9.99...E+125 in DynamoDB, but boto3 reads back at most 38 plain digits: below 1E+38.
READABLE_MAX_EXPONENT = DYNAMODB_NUMBER_DIGITS - 1
# The context boto3 writes and reads numbers in (boto3.dynamodb.types.DYNAMODB_CONTEXT, equal to it:
# tests/unit/test_cold_start_imports.py): a number it cannot hold exactly traps. Built here, not imported:
# importing boto3 (with s3transfer) for it cost the first batch ~18 ms of CPU where nothing else on the fetch path
# uses boto3 (fanout.aws).
DYNAMODB_CONTEXT = Context(
    Emin=-128, Emax=126, prec=DYNAMODB_NUMBER_DIGITS, traps=[Clamped, Overflow, Inexact, Rounded, Underflow]
)
CONDITION = "attribute_not_exists(#pk) OR #version <= :version"
# DynamoDB's limits for one TransactWriteItems call: 100 actions and 4 MB of items. The byte budget is half
# the limit because the request's JSON (base64 binaries, type tags) is what some endpoints measure.
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 2 * 1024 * 1024
# Calls in flight at once for a batch. Bounded so a batch cannot exhaust the client's connection pool
# (botocore's default max_pool_connections is 10).
MAX_PARALLEL_WRITES = 8
# Rows of a cancelled transaction re-sent when their own reason was transient (a conflict with another
# writer, per-row throttling): this many sends in all, with full-jitter backoff from BACKOFF_SECONDS, before
# they are reported failed (and retried by the queue). Whole calls are retried by botocore's standard mode
# (fanout.pipeline.wiring.aws_config), never here: the sink retrying them too multiplied the calls.
MAX_RESENDS = 6
BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 2.0

Results = dict[int, Outcome | Exception]  # a transaction's rows, by their place in the batch, to outcomes


# --------------------------------------------------------------------------- the item


def _dynamodb_number(value: Decimal) -> Decimal | str:
    """N (the Decimal) when DynamoDB stores it exactly and boto3 reads it back, else the exact digits (S)."""
    try:
        DYNAMODB_CONTEXT.create_decimal(value)  # boto3 writes only what fits 38 digits exactly
    except ArithmeticError:
        return str(value)
    if value and not DYNAMODB_MIN_EXPONENT <= value.adjusted() <= READABLE_MAX_EXPONENT:
        return str(value)
    return value


def _dynamodb_json(value: Any) -> Any:
    """A parsed JSON value (numbers as Decimal) as DynamoDB attribute values."""
    if isinstance(value, dict):
        if "" in value:
            raise UnrepresentableRow("a JSON object has an empty key, which a DynamoDB map cannot hold")
        return {k: _dynamodb_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamodb_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _dynamodb_number(Decimal(value))
    if isinstance(value, Decimal):
        return _dynamodb_number(value)
    raise TypeError(f"no DynamoDB form for a JSON value of type {type(value).__name__}")


def to_dynamodb_value(value: Any) -> Any:
    """A MySQL value as a boto3 DynamoDB resource-layer value (numbers as Decimal)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return _dynamodb_number(Decimal(value))
    if isinstance(value, Decimal):
        return _dynamodb_number(value)
    if isinstance(value, float):
        return _dynamodb_number(Decimal(repr(value)))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, JsonText):
        return _dynamodb_json(parsed_json(value))
    if isinstance(value, Relation):
        return relation_value(value, to_dynamodb_value)
    if isinstance(value, (dt.date, dt.timedelta)):
        return temporal_text(value)  # the OpenSearch document's text
    raise TypeError(f"no JSON form for a value of type {type(value).__name__}")


def _key_attributes(mapping: TableMapping, change: Change) -> dict[str, Any]:
    """The key attributes, and ``_fanout_key`` (every key attribute's full value) when one is bounded."""
    full = dynamodb_full_key(mapping, change)
    key: dict[str, Any] = bounded_dynamodb_key(mapping, full)
    if key != full:
        key[FULL_KEY_FIELD] = full
    return key


def dynamodb_attributes(mapping: TableMapping, row: dict[str, Any]) -> dict[str, Any]:
    """The row's projected, renamed columns as DynamoDB attribute values."""
    reserved = mapping.dynamodb.reserved_attributes
    attributes: dict[str, Any] = {}
    names = mapping.dynamodb.attributes if mapping.dynamodb.attributes is not None else tuple(row)
    if mapping.composition is not None:  # the root row's columns, and its relations if the item is the document
        relations = mapping.composition.relation_names
        names = tuple(n for n in names if n not in relations)
        if mapping.composition.dynamodb_document:
            names += tuple(n for n in row if n in relations)
    for column in names:
        if column not in row:
            raise UnrepresentableRow(f"column {column!r} in dynamodb.attributes is not a column of {mapping.table}")
        value = row[column]
        if isinstance(value, (bytes, bytearray)):
            if mapping.dynamodb.binary == "exclude":
                continue
            if mapping.dynamodb.binary == "base64":
                value = base64.b64encode(bytes(value)).decode("ascii")
        name = mapping.dynamodb.attribute(column)
        if name in reserved or name in attributes:
            raise UnrepresentableRow(
                f"column {column!r} of {mapping.table} would be the DynamoDB attribute {name!r}, which is "
                "taken or reserved; rename it or leave it out in the mapping"
            )
        attributes[name] = to_dynamodb_value(value)
    return attributes


def dynamodb_item(mapping: TableMapping, change: Change, row: dict[str, Any], version: int) -> dict[str, Any]:
    """The DynamoDB item for a present row: its projected columns, its key and our bookkeeping."""
    item = dynamodb_attributes(mapping, row)
    item.update(_key_attributes(mapping, change))
    item.update({"_table": mapping.table, "_version": Decimal(version), "_deleted": False})
    return item


def dynamodb_tombstone(mapping: TableMapping, change: Change, version: int, expires_at: int) -> dict[str, Any]:
    """The item left for a deleted row, so that a stale upsert cannot resurrect it."""
    item: dict[str, Any] = _key_attributes(mapping, change)
    item.update({"_table": mapping.table, "_version": Decimal(version), "_deleted": True, "_ttl": Decimal(expires_at)})
    return item


def attribute_value(value: Any) -> dict[str, Any]:
    """One value of an item (:func:`to_dynamodb_value`'s forms) as a DynamoDB attribute value, as boto3's
    TypeSerializer writes it: numbers (already checked to fit) as N, lists as L, maps as M."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, Decimal):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, dict):
        return {"M": {k: attribute_value(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [attribute_value(v) for v in value]}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, int):
        return {"N": str(value)}
    raise TypeError(f"no DynamoDB attribute value for a value of type {type(value).__name__}")


def attribute_values(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the low-level client's ``Item``: each attribute's value as an attribute value."""
    return {name: attribute_value(value) for name, value in item.items()}


def _number_size(value: Decimal) -> int:
    digits = value.normalize().as_tuple().digits if value else (0,)
    return (len(digits) + 1) // 2 + 1


def _value_size(value: Any) -> int:
    kind = type(value)  # the common kinds first, by type (most of an item's values are text and numbers)
    if kind is str:
        return len(value) if value.isascii() else len(value.encode("utf-8"))
    if kind is Decimal or kind is int:
        return _number_size(Decimal(value))
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (int, Decimal)):
        return _number_size(Decimal(value))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, dict):
        return 3 + sum(len(k.encode("utf-8")) + _value_size(v) + 1 for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 3 + sum(_value_size(v) + 1 for v in value)
    raise TypeError(f"no DynamoDB size for a value of type {type(value).__name__}")


def dynamodb_item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it (attribute names plus values; "Item sizes and formats")."""
    size = 0
    for name, value in item.items():
        size += len(name) if name.isascii() else len(name.encode("utf-8"))
        if type(value) is str:  # most values: measured here, without a call
            size += len(value) if value.isascii() else len(value.encode("utf-8"))
        else:
            size += _value_size(value)
    return size


def check_item_size(item: dict[str, Any]) -> int:
    """The item's size; UnrepresentableRow above DynamoDB's 400 KB, as DynamoDB would refuse it, before sending."""
    size = dynamodb_item_size(item)
    if size > MAX_ITEM_BYTES:
        raise UnrepresentableRow(
            f"the item is {size} bytes, above the {MAX_ITEM_BYTES}-byte (400 KB) item limit; project fewer "
            "columns (dynamodb.attributes) or exclude binaries (dynamodb.binary)"
        )
    return size


def dynamodb_refusal(mapping: TableMapping, change: Change, row: dict[str, Any], version: int) -> str:
    """Why DynamoDB can never take this row as the mapping shapes it ("" if it can): what the sink refuses."""
    try:
        check_item_size(dynamodb_item(mapping, change, row, version))
    except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no DynamoDB form
        return str(exc)
    return ""


# --------------------------------------------------------------------------- the writer


@dataclass(frozen=True)
class _Write:
    position: int  # the row's place in the batch
    item: dict[str, Any]  # as Python values (measured, keyed on)
    request: dict[str, Any]  # the conditional Put as the client sends it: table, attribute values, condition
    size: int
    done: Outcome  # WRITTEN or DELETED once applied
    where: str


class DynamoDBSink:
    name = "dynamodb"

    def __init__(
        self,
        client: Any,
        table_name: str | None,
        tombstone_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        batch_writes: str = BATCH_TRANSACTIONS,
    ) -> None:
        """``client``: a low-level DynamoDB client (``boto3.client("dynamodb")``, thread-safe), never a
        resource's; ``table_name``: the stack's ReplicaTable, for mappings that name no table of their own."""
        if batch_writes not in (BATCH_TRANSACTIONS, BATCH_PUTS):
            raise ValueError(f"batch_writes must be {BATCH_TRANSACTIONS!r} or {BATCH_PUTS!r}, got {batch_writes!r}")
        self._batch_writes = batch_writes
        send_transactions_as_built(client)  # the items go as the sink serialised them (fanout.sinks.dynamodb_wire)
        self._client = client
        self._table_name = table_name
        self._tombstone_ttl = tombstone_ttl_seconds
        self._clock = clock
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None  # created on the first batch, reused after

    def enabled_for(self, mapping: TableMapping) -> bool:
        return mapping.dynamodb.enabled

    def table_for(self, mapping: TableMapping) -> str:
        """The name of the table the mapping's items go to."""
        name = mapping.dynamodb.table or self._table_name
        if name is None:
            raise SinkError(f"{mapping.table} names no DynamoDB table, and the sink has no default table")
        return name

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        return self._put(self._build(mapping, self.table_for(mapping), change, state, 0))

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """Each row's conditional write, up to 100 a TransactWriteItems call; per row its Outcome or its
        exception (RowRejected: never writable; anything else: retry), so one row failing spares the others."""
        results: list[Outcome | Exception | None] = [None] * len(items)
        writes: list[_Write] = []
        table_name = self.table_for(mapping)
        for position, (change, state) in enumerate(items):
            try:
                writes.append(self._build(mapping, table_name, change, state, position))
            except RowRejected as exc:
                results[position] = exc
        if len(writes) < 2:  # a single row: one PutItem, half a transaction's capacity
            for write in writes:
                results[write.position] = self._outcome_or_error(partial(self._put, write))
            return _complete(results)
        if self._batch_writes == BATCH_PUTS:
            submitted = [
                (write, self._threads().submit(self._outcome_or_error, partial(self._put, write))) for write in writes
            ]
            for write, pending in submitted:
                results[write.position] = pending.result()
            return _complete(results)
        chunks = _transactions(mapping, writes)
        if len(chunks) == 1:
            results_of = [self._transact(chunks[0])]
        else:
            futures = [self._threads().submit(self._transact, chunk) for chunk in chunks]
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

    def _build(self, mapping: TableMapping, table_name: str, change: Change, state: RowState, position: int) -> _Write:
        """The row's item and its conditional Put, serialised once here and sent as built (re-sends too)."""
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
            request = {
                "TableName": table_name,
                "Item": attribute_values(item),
                "ConditionExpression": CONDITION,
                "ExpressionAttributeNames": {"#pk": mapping.dynamodb.partition_key.attribute, "#version": "_version"},
                "ExpressionAttributeValues": {":version": {"N": str(state.version)}},
            }
        except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no DynamoDB form
            raise RowRejected(f"DynamoDB cannot hold {where}: {exc}") from exc
        return _Write(position, item, request, size, done, where)

    # ----------------------------------------------------------------------- writing

    @staticmethod
    def _outcome_or_error(call: Callable[[], Outcome]) -> Outcome | Exception:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - reported per row to the fetcher, which decides
            return exc

    def _put(self, write: _Write) -> Outcome:
        """One conditional PutItem."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_item(**write.request)
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

    def _transact(self, writes: list[_Write]) -> Results:
        """One transaction's rows to their outcomes, isolating the rows that fail it.

        Rows a cancelled call spared (reason None) are sent again at once without the rows that settled;
        rows cancelled for a transient reason of their own are sent again after a backoff, MAX_RESENDS sends
        in all. A whole-call error has been through botocore's retries already: its rows fail here.
        """
        results: Results = {}
        pending = list(writes)
        last_error = ""
        for _ in attempts(MAX_RESENDS, first_wait=BACKOFF_SECONDS, most_wait=MAX_BACKOFF_SECONDS, sleep=self._sleep):
            pending, last_error = self._send(pending, results)
            if not pending:
                return results
        return _fail(results, pending, f"DynamoDB did not take the rows after {MAX_RESENDS} sends: {last_error}")

    def _send(self, pending: list[_Write], results: Results) -> tuple[list[_Write], str]:
        """Send ``pending`` until every row settles or some are cancelled for a transient reason: those are
        returned with the reason, to be sent again after a backoff (every other row's outcome is in ``results``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        while pending:
            try:
                self._client.transact_write_items(TransactItems=[{"Put": write.request} for write in pending])
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ValidationException":
                    if len(pending) == 1:
                        results[pending[0].position] = RowRejected(f"DynamoDB refused {pending[0].where}: {exc}")
                        return [], ""
                    half = len(pending) // 2  # one row spoils the call: split until it stands alone
                    results.update(self._transact(pending[:half]))
                    results.update(self._transact(pending[half:]))
                    return [], ""
                if code != "TransactionCanceledException":
                    _fail(results, pending, f"DynamoDB rejected the batch: {code}: {exc}")
                    return [], ""
                reasons = exc.response.get("CancellationReasons") or []
                if len(reasons) != len(pending):
                    reasons = [{"Code": "Unknown"}] * len(pending)  # no per-row answer: send them all again
                again: list[_Write] = []
                transient = ""
                for write, reason in zip(pending, reasons, strict=True):
                    reason_code = reason.get("Code") or "None"
                    if reason_code == "ConditionalCheckFailed":
                        results[write.position] = Outcome.STALE
                    elif reason_code == "ValidationError":
                        results[write.position] = RowRejected(
                            f"DynamoDB refused {write.where}: {reason.get('Message', reason_code)}"
                        )
                    else:  # None: not applied because another row cancelled; else a conflict or throttling
                        again.append(write)
                        if reason_code != "None":
                            transient = f"{reason_code}: {reason.get('Message', '')}"
                if transient or len(again) == len(pending):
                    return again, transient or "the transaction was cancelled with no row at fault"
                pending = again  # a row settled: send the others at once
            except BotoCoreError as exc:
                _fail(results, pending, f"DynamoDB unavailable: {exc}")
                return [], ""
            else:
                for write in pending:
                    results[write.position] = write.done
                return [], ""
        return [], ""


def _transactions(mapping: TableMapping, writes: list[_Write]) -> list[list[_Write]]:
    """The writes cut into TransactWriteItems calls: at most MAX_TRANSACTION_ITEMS and MAX_TRANSACTION_BYTES
    each, and never two writes of one item in a call (DynamoDB refuses that)."""
    key_names = [mapping.dynamodb.partition_key.attribute]
    if mapping.dynamodb.sort_key is not None:
        key_names.append(mapping.dynamodb.sort_key.attribute)
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
