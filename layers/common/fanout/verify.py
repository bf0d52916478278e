"""Comparing one row of the source with what each sink holds for it.

Used by the demo, the end-to-end tests and (later) reconcile: the expected
sink content is built with the same document builders the fetcher uses, so a
difference means the pipeline did not deliver, not that two encoders disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .change import Change
from .documents import dynamodb_partition_key, opensearch_document, to_dynamodb_value
from .mapping import TableMapping
from .source_reader import select_row_sql

BOOKKEEPING = frozenset({"pk", "_table", "_version", "_deleted", "_ttl"})


@dataclass(frozen=True)
class RowComparison:
    key: str
    source: dict[str, Any] | None
    opensearch: dict[str, Any] | None  # the document's _source, None when absent
    dynamodb: dict[str, Any] | None  # the item, None when absent
    opensearch_problem: str
    dynamodb_problem: str

    @property
    def agrees(self) -> bool:
        return not self.opensearch_problem and not self.dynamodb_problem


def read_source_row(conn: Any, mapping: TableMapping, change: Change) -> dict[str, Any] | None:
    sql = select_row_sql(mapping).replace(" LOCK IN SHARE MODE", "")
    with conn.cursor() as cur:
        cur.execute(sql, change.key_values)
        found = cur.fetchone()
        if found is None:
            return None
        return dict(zip((d[0] for d in cur.description), found, strict=True))


def opensearch_problem(mapping: TableMapping, source: dict[str, Any] | None, doc: dict[str, Any] | None) -> str:
    if source is None:
        return "" if doc is None else "present in OpenSearch but deleted in the source"
    if doc is None:
        return "missing from OpenSearch"
    expected = opensearch_document(mapping, source)
    differing = sorted(k for k in expected.keys() | doc.keys() if expected.get(k) != doc.get(k))
    return f"OpenSearch differs in {differing}" if differing else ""


def dynamodb_problem(source: dict[str, Any] | None, item: dict[str, Any] | None) -> str:
    live = item is not None and not item.get("_deleted", False)
    if source is None:
        return "" if not live else "live in DynamoDB but deleted in the source"
    if item is None or not live:
        return "missing from DynamoDB"
    expected = {k: to_dynamodb_value(v) for k, v in source.items()}
    actual = {k: v for k, v in item.items() if k not in BOOKKEEPING}
    differing = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    return f"DynamoDB differs in {differing}" if differing else ""


def compare_row(
    conn: Any, mapping: TableMapping, change: Change, opensearch_client: Any, dynamodb_table: Any
) -> RowComparison:
    """Read the row from the source and from both sinks and say where they differ."""
    from opensearchpy.exceptions import NotFoundError

    source = read_source_row(conn, mapping, change)
    doc: dict[str, Any] | None = None
    if mapping.opensearch_enabled:
        try:
            doc = opensearch_client.get(index=mapping.opensearch_index, id=change.document_id)["_source"]
        except NotFoundError:
            doc = None
    item = None
    if mapping.dynamodb_enabled:
        item = dynamodb_table.get_item(Key={"pk": dynamodb_partition_key(change)}, ConsistentRead=True).get("Item")
    return RowComparison(
        key=change.document_id,
        source=source,
        opensearch=doc,
        dynamodb=item,
        opensearch_problem=opensearch_problem(mapping, source, doc) if mapping.opensearch_enabled else "",
        dynamodb_problem=dynamodb_problem(source, item) if mapping.dynamodb_enabled else "",
    )
