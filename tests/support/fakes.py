"""In-memory stand-ins for the clients the fanout code is handed, shared by the unit tests.

Each fake keeps the behaviour the code relies on (DynamoDB's conditional put,
OpenSearch's external versioning and delete tombstones, the 202 of an
asynchronous invoke, the SQS message size cap) and raises the *real* library
exceptions, so the code's own error handling is what gets exercised.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import ModuleType, SimpleNamespace
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from botocore.hooks import HierarchicalEmitter
from opensearchpy.exceptions import ConflictError, NotFoundError, RequestError

from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.sinks.eventbridge import MAX_ENTRIES, MAX_REQUEST_BYTES, entry_size
from fanout.source.rows import RowState
from tests.support.files import EVENTS, ROOT


def load_app(relative_path: str, module_name: str) -> ModuleType:
    """A handler's app.py, imported from its path (it is not on a package path)."""
    spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_event(name: str) -> Any:
    """A scenario file from events/, read by path as `sam local invoke -e` reads it."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def load_record_body(name: str) -> Any:
    """The body of the one record of a fetcher scenario (an SQS batch): ``{"changes": [message, ...]}``."""
    [record] = load_event(name)["Records"]
    return json.loads(record["body"])


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


# --------------------------------------------------------------------------- DynamoDB

_COMPARISON = re.compile(r"^(\S+)\s*(<=|>=|<>|=|<|>)\s*(\S+)$")
_FUNCTION = re.compile(r"^(attribute_not_exists|attribute_exists)\((\S+)\)$")
_MISSING = object()


class FakeDynamoDBTable:
    """A boto3 ``Table`` resource holding items in a dict.

    ``put_item`` serialises the item the way boto3 does (so a float or an
    unrepresentable number fails as it would), enforces the 2048-byte partition
    key limit, and evaluates a condition made of ``attribute_[not_]exists(..)``
    and comparisons joined by ``OR`` with DynamoDB's semantics: a comparison
    involving a missing attribute or mismatched types is false. Like DynamoDB,
    a conditional put is atomic per item: concurrent callers (threads) never
    both pass a condition that only one write may pass.
    """

    MAX_PARTITION_KEY_BYTES = 2048

    def __init__(
        self, key_attribute: str = "pk", ttl_attribute: str | None = None, sort_attribute: str | None = None
    ) -> None:
        self.key_attribute = key_attribute
        self.sort_attribute = sort_attribute
        self.ttl_attribute = ttl_attribute
        self.items: dict[Any, dict[str, Any]] = {}  # by partition key value, or (partition, sort)
        self.put_calls: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None
        self._serializer = TypeSerializer()
        self._lock = threading.Lock()
        self.name = f"fake-{uuid.uuid4().hex[:8]}"
        self.meta = SimpleNamespace(client=FakeDynamoDBClient(self))
        self.transactions: list[list[dict[str, Any]]] = []  # every TransactWriteItems call's Puts

    @classmethod
    def from_template(cls, properties: dict[str, Any]) -> FakeDynamoDBTable:
        """A table shaped like an ``AWS::DynamoDB::Table`` declared in template.yaml."""
        [hash_key] = [k["AttributeName"] for k in properties["KeySchema"] if k["KeyType"] == "HASH"]
        ttl = properties.get("TimeToLiveSpecification", {})
        return cls(key_attribute=hash_key, ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None)

    def put_item(
        self,
        *,
        Item: dict[str, Any],
        ConditionExpression: str | None = None,
        ExpressionAttributeNames: dict[str, str] | None = None,
        ExpressionAttributeValues: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.put_calls.append(
            {
                "Item": Item,
                "ConditionExpression": ConditionExpression,
                "ExpressionAttributeNames": ExpressionAttributeNames,
                "ExpressionAttributeValues": ExpressionAttributeValues,
            }
        )
        if self.fail_with is not None:
            raise self.fail_with
        stored_key = self._stored_key(Item, "PutItem")
        with self._lock:
            if not self._passes(stored_key, ConditionExpression, ExpressionAttributeNames, ExpressionAttributeValues):
                raise client_error("ConditionalCheckFailedException", "The conditional request failed", "PutItem")
            self.items[stored_key] = copy.deepcopy(Item)
        return {}

    def transact_write_items(self, puts: list[dict[str, Any]]) -> None:
        """All the Puts or none, as TransactWriteItems: a whole-call ValidationException for an invalid item,
        else TransactionCanceledException naming each Put's reason (ConditionalCheckFailed or None)."""
        self.transactions.append(puts)
        if self.fail_with is not None:
            raise self.fail_with
        keys = [self._stored_key(put["Item"], "TransactWriteItems") for put in puts]
        if len(set(keys)) != len(keys):
            raise client_error(
                "ValidationException",
                "Transaction request cannot include multiple operations on one item",
                "TransactWriteItems",
            )
        with self._lock:
            passes = [
                self._passes(key, put.get("ConditionExpression"), put.get("ExpressionAttributeNames"),
                             put.get("ExpressionAttributeValues"))
                for key, put in zip(keys, puts, strict=True)
            ]  # fmt: skip
            if not all(passes):
                error = client_error("TransactionCanceledException", "Transaction cancelled", "TransactWriteItems")
                error.response["CancellationReasons"] = [
                    {"Code": "None"}
                    if ok
                    else {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
                    for ok in passes
                ]
                raise error
            for key, put in zip(keys, puts, strict=True):
                self.items[key] = copy.deepcopy(put["Item"])

    def _passes(
        self, stored_key: Any, expression: str | None, names: dict[str, str] | None, values: dict[str, Any] | None
    ) -> bool:
        if expression is None:
            return True
        return self._holds(expression, self.items.get(stored_key), names or {}, values or {})

    def _stored_key(self, Item: dict[str, Any], operation: str) -> Any:  # noqa: N803 - boto3's spelling
        """The item's key in ``items``, once it is checked as DynamoDB checks it before any write."""
        for value in Item.values():
            self._serializer.serialize(value)  # raises as boto3 would, before any request
        key = Item.get(self.key_attribute)
        if not isinstance(key, str) or not key:
            raise client_error("ValidationException", "missing or empty partition key", operation)
        if len(key.encode("utf-8")) > self.MAX_PARTITION_KEY_BYTES:
            raise client_error(
                "ValidationException",
                f"One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit "
                f"of {self.MAX_PARTITION_KEY_BYTES} bytes",
                operation,
            )
        stored_key: Any = key
        if self.sort_attribute is not None:
            sort = Item.get(self.sort_attribute)
            if not isinstance(sort, str) or not sort:
                raise client_error("ValidationException", "missing or empty sort key", operation)
            stored_key = (key, sort)
        return stored_key

    def get_item(self, *, Key: dict[str, Any], ConsistentRead: bool = False) -> dict[str, Any]:
        stored_key: Any = Key[self.key_attribute]
        if self.sort_attribute is not None:
            stored_key = (stored_key, Key[self.sort_attribute])
        with self._lock:
            item = self.items.get(stored_key)
        return {} if item is None else {"Item": copy.deepcopy(item)}

    def _holds(
        self, expression: str, item: dict[str, Any] | None, names: dict[str, str], values: dict[str, Any]
    ) -> bool:
        return any(self._clause(part.strip(), item, names, values) for part in re.split(r"\s+OR\s+", expression))

    @staticmethod
    def _clause(clause: str, item: dict[str, Any] | None, names: dict[str, str], values: dict[str, Any]) -> bool:
        def attribute(path: str) -> str:
            return names[path] if path.startswith("#") else path

        def operand(token: str) -> Any:
            if token.startswith(":"):
                return values[token]
            return _MISSING if item is None else item.get(attribute(token), _MISSING)

        function = _FUNCTION.match(clause)
        if function:
            exists = item is not None and attribute(function.group(2)) in item
            return exists if function.group(1) == "attribute_exists" else not exists
        comparison = _COMPARISON.match(clause)
        if not comparison:
            raise NotImplementedError(f"the fake table does not understand the condition {clause!r}")
        left, op, right = operand(comparison.group(1)), comparison.group(2), operand(comparison.group(3))
        if left is _MISSING or right is _MISSING:
            return False
        numeric = (int, Decimal)
        if not (isinstance(left, numeric) and isinstance(right, numeric)) and type(left) is not type(right):
            return False
        return {
            "<=": left <= right,
            "<": left < right,
            ">=": left >= right,
            ">": left > right,
            "=": left == right,
            "<>": left != right,
        }[op]


class FakeDynamoDBClient:
    """A low-level DynamoDB client over FakeDynamoDBTables (``table.meta.client``): the calls the sink makes,
    taking attribute values as the real client does and answering with the named table (``named`` gives the
    tables other than ``table``). A request holding a plain Python value where an attribute value belongs
    fails (TypeError), as the real client cannot send it. Its ``meta.events`` is botocore's emitter, as the real
    client's: handlers register there, and none runs, as no request is serialised (tests/unit/test_dynamodb_wire.py
    runs them on a real client)."""

    def __init__(self, table: FakeDynamoDBTable, named: Callable[[str], FakeDynamoDBTable] | None = None) -> None:
        self.meta = SimpleNamespace(events=HierarchicalEmitter(), service_model=SimpleNamespace(protocol="json"))
        self._table = table
        self._named = named
        self._deserializer = TypeDeserializer()
        self.calls: list[str] = []  # the operations called, in order

    def _table_named(self, table_name: str, operation: str) -> FakeDynamoDBTable:
        if table_name == self._table.name:
            return self._table
        if self._named is None:
            raise client_error("ResourceNotFoundException", f"no table {table_name!r}", operation)
        return self._named(table_name)

    def _python(self, request: dict[str, Any]) -> dict[str, Any]:
        """A Put's item and condition values as the table holds them (Python values)."""
        values = request.get("ExpressionAttributeValues")
        return {
            "Item": {k: self._deserializer.deserialize(v) for k, v in request["Item"].items()},
            "ConditionExpression": request.get("ConditionExpression"),
            "ExpressionAttributeNames": request.get("ExpressionAttributeNames"),
            "ExpressionAttributeValues": None
            if values is None
            else {k: self._deserializer.deserialize(v) for k, v in values.items()},
        }

    def put_item(self, *, TableName: str, **request: Any) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        self.calls.append("PutItem")
        table = self._table_named(TableName, "PutItem")
        return table.put_item(**self._python(request))

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append("TransactWriteItems")
        puts = [entry["Put"] for entry in TransactItems]
        tables = {self._table_named(put["TableName"], "TransactWriteItems").name for put in puts}
        if len(tables) != 1:
            raise NotImplementedError("the fake client writes a transaction into one table")
        table = self._table_named(puts[0]["TableName"], "TransactWriteItems")
        table.transact_write_items([self._python(put) for put in puts])
        return {}


# --------------------------------------------------------------------------- OpenSearch


@dataclass
class StoredDocument:
    version: int
    source: dict[str, Any] | None  # None: a delete tombstone


class FakeIndices:
    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}  # index -> create body
        self.create_calls: list[str] = []
        self.exists_calls: list[str] = []
        self.auto_created: set[str] = set()  # created by a write, without our settings
        self.created_concurrently: set[str] = set()  # another writer wins the race for these
        self.aliases: dict[str, set[str]] = {}  # alias -> its indices
        self.alias_reads: list[str] = []
        self.templates: dict[str, dict[str, Any]] = {}  # name -> index template body
        self.settings: dict[str, dict[str, Any]] = {}  # index -> settings put on it after its creation

    def put_index_template(self, *, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.templates[name] = copy.deepcopy(body)
        return {"acknowledged": True}

    def get_settings(self, *, index: str, name: str = "", include_defaults: bool = False) -> dict[str, Any]:
        """The index's own settings (as OpenSearch: flat names nested by their dots), gc_deletes' default apart."""
        own = copy.deepcopy((self.created.get(index) or {}).get("settings") or {})
        own.setdefault("index", {}).update(self.settings.get(index, {}))
        return {index: {"settings": own, "defaults": {"index": {"gc_deletes": "60s"}}}}

    def put_settings(self, *, index: str, body: dict[str, Any]) -> dict[str, Any]:
        self.settings.setdefault(index, {}).update(body.get("index", {}))
        return {"acknowledged": True}

    def exists(self, *, index: str) -> bool:
        self.exists_calls.append(index)
        return index in self.created or index in self.auto_created or bool(self.aliases.get(index))

    def resolve(self, name: str) -> str:
        """The index a name writes to: itself, or the one index of an alias (OpenSearch refuses a write to an
        alias over several indices without a write index)."""
        indices = self.aliases.get(name)
        if not indices:
            return name
        if len(indices) != 1:
            raise RequestError(
                400, "illegal_argument_exception", {"error": {"reason": f"alias [{name}] has more than one index"}}
            )
        return next(iter(indices))

    def get_alias(self, *, name: str) -> dict[str, Any]:
        self.alias_reads.append(name)
        indices = self.aliases.get(name)
        if not indices:
            raise NotFoundError(404, "aliases_not_found_exception", {"error": f"alias [{name}] missing"})
        return {index: {"aliases": {name: {}}} for index in sorted(indices)}

    def update_aliases(self, *, body: dict[str, Any]) -> dict[str, Any]:
        """``_aliases``: every action applied at once, or none (as OpenSearch does)."""
        aliases = {name: set(indices) for name, indices in self.aliases.items()}
        removed: set[str] = set()
        for action in body["actions"]:
            ((kind, target),) = action.items()
            if kind == "add":
                aliases.setdefault(target["alias"], set()).add(target["index"])
            elif kind == "remove":
                aliases.get(target["alias"], set()).discard(target["index"])
            elif kind == "remove_index":
                removed.add(target["index"])
        for index in removed:
            self.created.pop(index, None)
            for indices in aliases.values():
                indices.discard(index)
        self.aliases = {name: indices for name, indices in aliases.items() if indices}
        return {"acknowledged": True}

    def create(self, *, index: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.create_calls.append(index)
        if index in self.created_concurrently:
            self.created[index] = {"settings": {}}
            raise RequestError(400, "resource_already_exists_exception", {"error": {"index": index}})
        if index in self.created or index in self.auto_created:
            raise RequestError(400, "resource_already_exists_exception", {"error": {"index": index}})
        self.created[index] = copy.deepcopy(body or {})
        for alias in (body or {}).get("aliases", {}):
            self.aliases.setdefault(alias, set()).add(index)
        return {"acknowledged": True, "index": index}


class FakeOpenSearch:
    """An opensearch-py client with external versioning (``external``/``external_gte``).

    Like OpenSearch, a versioned delete leaves a tombstone carrying its version
    (kept for ``index.gc_deletes``; here, for ever), so a later write with a
    lower version is a 409 even though the document is gone, and deleting a
    missing document answers 404 after recording the tombstone.
    """

    MAX_ID_BYTES = 512

    def __init__(self) -> None:
        self.indices = FakeIndices()
        self.docs: dict[tuple[str, str], StoredDocument] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: Exception | None = None
        self._lock = threading.RLock()  # a version check and its write are one step, as on a shard

    def document(self, index: str, doc_id: str) -> dict[str, Any] | None:
        stored = self.docs.get((self.indices.resolve(index), doc_id))
        return None if stored is None else stored.source

    def get(self, *, index: str, id: str) -> dict[str, Any]:
        index = self.indices.resolve(index)
        with self._lock:
            stored = self.docs.get((index, id))
        if stored is None or stored.source is None:
            raise NotFoundError(404, "not_found", {"_index": index, "_id": id, "found": False})
        return {"_index": index, "_id": id, "_version": stored.version, "found": True, "_source": stored.source}

    def index(self, *, index: str, id: str, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        index = self.indices.resolve(index)
        self.calls.append(("index", {"index": index, "id": id, "body": body, "params": params}))
        json.dumps(body)  # the real client serialises the body; anything not JSON fails here
        with self._lock:
            version = self._check_write(index, id, params)
            self.docs[(index, id)] = StoredDocument(version, copy.deepcopy(body))
        return {"_index": index, "_id": id, "_version": version, "result": "updated"}

    def delete(self, *, index: str, id: str, params: dict[str, Any]) -> dict[str, Any]:
        index = self.indices.resolve(index)
        self.calls.append(("delete", {"index": index, "id": id, "params": params}))
        with self._lock:
            version = self._check_write(index, id, params)
            previous = self.docs.get((index, id))
            self.docs[(index, id)] = StoredDocument(version, None)
        if previous is None or previous.source is None:
            raise NotFoundError(404, "not_found", {"_index": index, "_id": id, "result": "not_found"})
        return {"_index": index, "_id": id, "_version": version, "result": "deleted"}

    def bulk(self, *, body: bytes | list[dict[str, Any]]) -> dict[str, Any]:
        """``_bulk`` (NDJSON bytes, as the sink sends it, or a list of lines): each item applied as its own
        index/delete (recorded as such in ``calls``), answered
        per item with its status and error; only a whole-request failure (``fail_with``) raises."""
        if self.fail_with is not None and not isinstance(self.fail_with, (ConflictError, RequestError)):
            raise self.fail_with  # a connection error, 413, 429, 5xx: the whole request fails
        self.bulk_requests = getattr(self, "bulk_requests", 0) + 1
        items: list[dict[str, Any]] = []
        if isinstance(body, bytes):
            body = [json.loads(line) for line in body.splitlines() if line]
        lines = iter(body)
        for action_line in lines:
            ((action, meta),) = action_line.items()
            params = {"version": meta["version"], "version_type": meta["version_type"]}
            try:
                if action == "delete":
                    answer = self.delete(index=meta["_index"], id=meta["_id"], params=params)
                else:
                    answer = self.index(index=meta["_index"], id=meta["_id"], body=next(lines), params=params)
                items.append({action: {**answer, "status": 200}})
            except (ConflictError, NotFoundError, RequestError) as exc:
                items.append(
                    {
                        action: {
                            "_index": meta["_index"],
                            "_id": meta["_id"],
                            "status": exc.status_code,
                            # a _bulk item carries the error object itself, not the whole response body
                            "error": exc.info.get("error", exc.info) if isinstance(exc.info, dict) else exc.info,
                        }
                    }
                )
        return {"errors": any(i[next(iter(i))]["status"] >= 300 for i in items), "items": items}

    def _check_write(self, index: str, doc_id: str, params: dict[str, Any]) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        if len(doc_id.encode("utf-8")) > self.MAX_ID_BYTES:
            raise RequestError(
                400,
                "action_request_validation_exception",
                {"error": {"reason": f"id is too long, must be no longer than {self.MAX_ID_BYTES} bytes"}},
            )
        version_type = params.get("version_type")
        if version_type not in ("external", "external_gte"):
            raise NotImplementedError(f"the fake only models external versioning, got {version_type!r}")
        version = int(params["version"])
        if index not in self.indices.created:
            self.indices.auto_created.add(index)  # as OpenSearch does, with default settings
        stored = self.docs.get((index, doc_id))
        if stored is not None:
            conflict = version < stored.version if version_type == "external_gte" else version <= stored.version
            if conflict:
                raise ConflictError(
                    409,
                    "version_conflict_engine_exception",
                    {
                        "error": {
                            "type": "version_conflict_engine_exception",
                            "reason": f"[{doc_id}]: version conflict, current version [{stored.version}] is higher "
                            f"than or equal to the one provided [{version}]",
                        }
                    },
                )
        return version


# --------------------------------------------------------------------------- Lambda, SQS


class FakeLambdaClient:
    """``invoke`` records the request and answers with ``status_code`` (202: an accepted Event invoke)."""

    def __init__(self, status_code: int | None = 202) -> None:
        self.status_code = status_code
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invocations.append(kwargs)
        return {"StatusCode": self.status_code}


# The characters SQS accepts in a message body (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
# #x10000-#x10FFFF); anything else is refused with InvalidMessageContents (SendMessage API reference).
_SQS_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class FakeSQSClient:
    """``send_message`` records messages and, like SQS, refuses one bigger than the queue's maximum
    or holding a character outside the set SQS accepts.

    The default maximum is 256 KiB, the cap ``fanout.pipeline.rejects`` is written for.
    """

    def __init__(self, max_message_bytes: int = 256 * 1024) -> None:
        self.max_message_bytes = max_message_bytes
        self.messages: list[dict[str, Any]] = []
        self.refuse: Callable[[Any], bool] = lambda body: False  # which bodies SendMessageBatch lists as failed

    def send_message(
        self,
        *,
        QueueUrl: str,
        MessageBody: str,
        MessageAttributes: dict[str, dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        if _SQS_FORBIDDEN.search(MessageBody):
            raise client_error(
                "InvalidMessageContents", "The message contains characters outside the allowed set.", "SendMessage"
            )
        size = len(MessageBody.encode("utf-8"))
        for name, attribute in (MessageAttributes or {}).items():
            size += len(name.encode()) + len(attribute["DataType"].encode())
            size += len(attribute.get("StringValue", "").encode())
        if size > self.max_message_bytes:
            raise client_error(
                "InvalidParameterValue",
                f"One or more parameters are invalid. Reason: Message must be shorter than "
                f"{self.max_message_bytes} bytes.",
                "SendMessage",
            )
        self.messages.append({"QueueUrl": QueueUrl, "MessageBody": MessageBody, "MessageAttributes": MessageAttributes})
        return {"MessageId": str(uuid.uuid4())}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Like SQS: at most 10 entries and ``max_message_bytes`` of bodies together; each accepted or listed
        under ``Failed`` (a body for which ``refuse`` answers True)."""
        if len(Entries) > 10:
            raise client_error("TooManyEntriesInBatchRequest", "Maximum number of entries is 10", "SendMessageBatch")
        if sum(len(e["MessageBody"].encode("utf-8")) for e in Entries) > self.max_message_bytes:
            raise client_error(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {self.max_message_bytes} bytes.",
                "SendMessageBatch",
            )
        self.batch_calls = getattr(self, "batch_calls", 0) + 1
        ok, failed = [], []
        for entry in Entries:
            if self.refuse(json.loads(entry["MessageBody"])):
                failed.append(
                    {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
                )
                continue
            self.messages.append({"QueueUrl": QueueUrl, "MessageBody": entry["MessageBody"], "MessageAttributes": None})
            ok.append({"Id": entry["Id"], "MessageId": str(uuid.uuid4())})
        return {"Successful": ok, "Failed": failed}

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(m["MessageBody"]) for m in self.messages]


# --------------------------------------------------------------------------- source and callables


class FakeSource:
    """The source database as the fetcher sees it: one committed state per row key."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, tuple[Any, ...]], RowState] = {}
        self.reads: list[Change] = []
        self.failures: dict[tuple[str, tuple[Any, ...]], Exception] = {}

    def set(self, table: str, key_values: Sequence[Any], row: dict[str, Any] | None, version: int) -> None:
        self.states[(table, tuple(key_values))] = RowState(row, version)

    def fail(self, table: str, key_values: Sequence[Any], error: Exception) -> None:
        self.failures[(table, tuple(key_values))] = error

    def read_row(self, mapping: TableMapping, change: Change) -> RowState:
        self.reads.append(change)
        failure = self.failures.get((change.table, change.key_values))
        if failure is not None:
            raise failure
        return self.states[(change.table, change.key_values)]

    def read_rows(
        self, mapping: TableMapping, changes: Sequence[Change], *, deadline: Any = None
    ) -> list[RowState | Exception]:
        """Key by key, as the real batch read reports: a key that cannot be read is its exception."""
        states: list[RowState | Exception] = []
        for change in changes:
            try:
                states.append(self.read_row(mapping, change))
            except Exception as exc:  # noqa: BLE001 - that key's item, as fanout.source.reader.read_rows gives
                states.append(exc)
        return states

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        raise RuntimeError("the in-memory source holds no composed documents")


@dataclass
class Rejection:
    reason: str
    payload: Any
    correlation_id: str


@dataclass
class RecordingReject:
    """A ``reject`` callable that remembers what it was asked to record."""

    rejections: list[Rejection] = field(default_factory=list)

    def __call__(self, reason: str, payload: Any, correlation_id: str) -> None:
        self.rejections.append(Rejection(reason, payload, correlation_id))


@dataclass
class RecordingQueue:
    """A change queue (fanout.pipeline.fetch_queue.ChangeQueue) that remembers each batch of changes sent to it."""

    batches: list[list[Change]] = field(default_factory=list)

    def send(self, changes: Sequence[Change]) -> None:
        self.batches.append(list(changes))


@dataclass
class CallbackQueue:
    """A change queue whose ``send`` is the test's function: one that fails, paces or records by its own rule."""

    on_send: Callable[[Sequence[Change]], None]

    def send(self, changes: Sequence[Change]) -> None:
        self.on_send(changes)


@dataclass
class FakeContext:
    """The bits of a Lambda context object the handlers read."""

    aws_request_id: str = "8f3c2a8e-0000-4000-8000-000000000001"
    function_name: str = "fanout-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fanout-test"


# --------------------------------------------------------------------------- EventBridge


class FakeEventBridge:
    """An EventBridge client's ``put_events`` as the service answers it: a request of more than 10 entries or
    256 KB (entries counted as EventBridge counts them) is refused whole (ValidationException); otherwise each
    entry is answered in order, an EventId or an ErrorCode. A Detail that is not a JSON object is
    MalformedDetail, a bus that does not exist ResourceNotFoundException, as the service answers.

    Faults are per entry: ``fail_entries`` makes the next sends answer the entries whose Detail satisfies a
    predicate with a code (ThrottlingException, AccessDeniedException, ...); ``fail_calls`` fails whole calls.
    Every request is kept (``requests``), every published event in ``published``."""

    def __init__(self, buses: Sequence[str] = ("fanout-changes",)) -> None:
        self.buses = set(buses)
        self.requests: list[list[dict[str, Any]]] = []
        self.published: list[dict[str, Any]] = []
        self.entry_faults: list[tuple[Callable[[dict[str, Any]], bool], str, int]] = []  # (which, code, times)
        self.faults_used: dict[tuple[int, str], int] = {}  # (fault, the entry's Detail) -> sends it failed
        self.call_faults: list[Exception] = []

    def fail_entries(self, which: Callable[[dict[str, Any]], bool], code: str, times: int = 1) -> None:
        """The next ``times`` sends of each entry whose parsed Detail ``which`` selects fail with ``code``."""
        self.entry_faults.append((which, code, times))

    def fail_calls(self, *errors: Exception) -> None:
        self.call_faults.extend(errors)

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        self.requests.append([dict(entry) for entry in Entries])
        if self.call_faults:
            raise self.call_faults.pop(0)
        if not 1 <= len(Entries) <= MAX_ENTRIES:
            raise client_error("ValidationException", "Entries must have length between 1 and 10", "PutEvents")
        if sum(entry_size(entry) for entry in Entries) > MAX_REQUEST_BYTES:
            raise client_error(
                "ValidationException", "Total size of the entries in the request is over the limit", "PutEvents"
            )
        answers: list[dict[str, Any]] = []
        for entry in Entries:
            answers.append(self._answer(entry))
        return {"FailedEntryCount": sum(1 for a in answers if "ErrorCode" in a), "Entries": answers}

    def _answer(self, entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("EventBusName", "default") not in self.buses:
            return {"ErrorCode": "ResourceNotFoundException", "ErrorMessage": "Event bus does not exist."}
        try:
            detail = json.loads(entry["Detail"])
        except (KeyError, ValueError):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
        if not isinstance(detail, dict):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
        for index, (which, code, times) in enumerate(self.entry_faults):
            used = self.faults_used.get((index, entry["Detail"]), 0)
            if used < times and which(detail):
                self.faults_used[(index, entry["Detail"])] = used + 1
                return {"ErrorCode": code, "ErrorMessage": f"injected {code}"}
        self.published.append({**entry, "Detail": detail})
        return {"EventId": f"event-{len(self.published)}"}


def fake_dynamodb(table: FakeDynamoDBTable | None = None) -> tuple[FakeDynamoDBClient, str]:
    """What DynamoDBSink takes first (its client, its default table's name) for a fake table (a new one)."""
    table = table or FakeDynamoDBTable()
    return table.meta.client, table.name
