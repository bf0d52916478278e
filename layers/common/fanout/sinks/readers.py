"""Batched reads of what the sinks hold, for reconcile: documents and items by key, and every key a sink holds.

:func:`read_numbers_exactly` makes a boto3 resource read any N, however many digits (boto3 alone raises
``decimal.Rounded`` above 38 plain digits, which an item written by someone else, or by an older fanout,
may hold). Throttling and outages are retried.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from fanout.model.mapping import FULL_KEY_FIELD, TableMapping
from fanout.retry import attempts

BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem keys per request
MAX_RESULT_WINDOW = 10_000  # OpenSearch's default index.max_result_window: the most hits one search returns


# unmapped_type: an index that has only ever held deletes (tombstones) has no mapping, and OpenSearch refuses
# to sort it on _id ("No mapping found for [_id]") instead of answering with no hits
ID_ORDER = {"_id": {"order": "asc", "unmapped_type": "keyword"}}


class SinkReaders:
    """Batched reads of what the sinks hold, with the clients reconcile is given."""

    def __init__(self, opensearch: Any, dynamodb: Any, default_table: str) -> None:
        # opensearch-py client reading JSON numbers exactly (fanout.sinks.opensearch.make_client)
        self.opensearch = opensearch
        # boto3 DynamoDB service resource, made to read an N of any length (one such item must not fail a page)
        self.dynamodb = read_numbers_exactly(dynamodb)
        self.default_table = default_table

    def table_name(self, mapping: TableMapping) -> str:
        return mapping.dynamodb.table or self.default_table

    def documents(self, mapping: TableMapping, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The live documents with these ids. ``_mget`` is real-time (a search sees a write only after the
        index's next refresh, so a row written a moment ago would look missing)."""
        if not ids:
            return {}
        found = self.opensearch.mget(index=mapping.opensearch.index, body={"ids": list(ids)})
        documents: dict[str, dict[str, Any]] = {}
        for doc in found["docs"]:
            error = doc.get("error")
            if error is not None:
                if (error.get("type") if isinstance(error, dict) else None) == "index_not_found_exception":
                    continue  # no index yet: nothing is there
                raise RuntimeError(f"OpenSearch could not read {mapping.opensearch.index}/{doc.get('_id')}: {error}")
            if doc.get("found"):
                documents[doc["_id"]] = doc["_source"]
        return documents

    def items(self, mapping: TableMapping, keys: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
        name = self.table_name(mapping)
        items: list[dict[str, Any]] = []
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {name: {"Keys": list(keys[i : i + BATCH_GET_LIMIT]), "ConsistentRead": True}}
            for _ in attempts(10, first_wait=0.05, most_wait=2.0, jitter=False):
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                items += answer.get("Responses", {}).get(name, [])
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                raise RuntimeError(f"DynamoDB kept {len(request[name]['Keys'])} keys of {name} unprocessed")
        return items

    def document_ids(self, mapping: TableMapping, page_size: int) -> Iterator[list[tuple[str, Any]]]:
        """Every document's (id, full key kept for a bounded id or None), a page at a time, in id order."""
        from opensearchpy.exceptions import NotFoundError

        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": {"match_all": {}}, "size": page_size, "sort": [ID_ORDER]}
            body.update(_source=[FULL_KEY_FIELD], track_total_hits=False)  # no count per page: it would cost a pass
            if after is not None:
                body["search_after"] = after
            try:
                hits = self.opensearch.search(index=mapping.opensearch.index, body=body)["hits"]["hits"]
            except NotFoundError:
                return
            if not hits:
                return
            yield [_id_and_full_key(hit) for hit in hits]
            after = hits[-1]["sort"]

    def random_document_ids(self, mapping: TableMapping, size: int, page_size: int) -> Iterator[list[tuple[str, Any]]]:
        """About ``size`` document ids drawn uniformly at random (a seeded ``random_score``), a page at a time."""
        from opensearchpy.exceptions import NotFoundError

        scored = {"query": {"match_all": {}}, "random_score": {"seed": random.getrandbits(31), "field": "_seq_no"}}
        body = {
            "query": {"function_score": {**scored, "boost_mode": "replace"}},
            "size": min(size, MAX_RESULT_WINDOW),
            "_source": [FULL_KEY_FIELD],
            "track_total_hits": False,
        }
        try:
            hits = self.opensearch.search(index=mapping.opensearch.index, body=body)["hits"]["hits"]
        except NotFoundError:
            return
        for i in range(0, len(hits), page_size):
            yield [_id_and_full_key(hit) for hit in hits[i : i + page_size]]

    def live_items(
        self, mapping: TableMapping, page_size: int, segment: tuple[int, int] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The table's live items, ``page_size`` at a time; with ``segment`` (n, total), only that segment
        of a parallel scan. Scan pages are DynamoDB's own (up to 1 MB each, which bounds memory): a
        ``Limit`` would only multiply the requests, and a table holding several source tables would
        return mostly-filtered, near-empty pages."""
        from boto3.dynamodb.conditions import Attr

        table = self.dynamodb.Table(self.table_name(mapping))
        options: dict[str, Any] = {
            "FilterExpression": Attr("_table").eq(mapping.table) & Attr("_deleted").eq(False),
            "ConsistentRead": True,
        }
        if segment is not None:
            options.update(Segment=segment[0], TotalSegments=segment[1])
        while True:
            page = table.scan(**options)
            items = page.get("Items", [])
            for i in range(0, len(items), page_size):
                yield items[i : i + page_size]
            if "LastEvaluatedKey" not in page:
                return
            options["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _id_and_full_key(hit: dict[str, Any]) -> tuple[str, Any]:
    return hit["_id"], (hit.get("_source") or {}).get(FULL_KEY_FIELD)


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
