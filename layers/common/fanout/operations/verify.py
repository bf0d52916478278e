"""Comparing one row of the source with what each sink holds for it.

Used by the demo, the tests and (later) reconcile: the expected sink content
is built with the same builders the fetcher uses (renames, exclusions,
projections, key formats and value conversions all come from the mapping), so
a difference means the pipeline did not deliver, not that two encoders
disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import BOOKKEEPING_ATTRIBUTES, TableMapping
from fanout.model.sink_keys import UnrepresentableRow, dynamodb_key, opensearch_document_id
from fanout.retry import Sleep, attempts
from fanout.sinks.dynamodb import dynamodb_attributes, to_dynamodb_value
from fanout.sinks.opensearch import opensearch_document
from fanout.source.composition_read import composed_page
from fanout.source.rows import has_exact_key, select_row_sql, typed_row

SHARD_START_ATTEMPTS = 50  # 0.2 s apart: a new index's shard starts within a second or two

BOOKKEEPING = BOOKKEEPING_ATTRIBUTES | {"pk"}


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
    """The row as the fetcher would see it (same columns, same conversions), without a lock."""
    if mapping.composition is not None:  # the composed document (None: absent or filtered out)
        found_rows = composed_page(conn, mapping, [dict(change.key)])
        return found_rows[0] if found_rows and has_exact_key(found_rows[0], change) else None
    sql = select_row_sql(mapping, lock="")
    with conn.cursor() as cur:
        cur.execute(sql, change.key_values)
        found = cur.fetchone()
        if found is None:
            return None
        row = typed_row(cur, found, mapping)
        return row if has_exact_key(row, change) else None


def _differing(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return sorted(k for k in expected.keys() | actual.keys() if expected.get(k, ...) != actual.get(k, ...))


def _exact_numbers(value: Any) -> Any:
    """A JSON value with every float as the Decimal of its shortest form, so that a float column's 1.1 equals
    the document's 1.1 read back exactly (a Decimal), and a JSON decimal that lost digits does not."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _exact_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact_numbers(v) for v in value]
    return value


def opensearch_problem(mapping: TableMapping, source: dict[str, Any] | None, doc: dict[str, Any] | None) -> str:
    if source is None:
        return "" if doc is None else "present in OpenSearch but deleted in the source"
    if doc is None:
        return "missing from OpenSearch"
    try:
        expected = opensearch_document(mapping, source)
    except UnrepresentableRow as exc:
        return f"the source row cannot be an OpenSearch document: {exc}"
    differing = _differing(_exact_numbers(expected), _exact_numbers(doc))
    return f"OpenSearch differs in {differing}" if differing else ""


def dynamodb_problem(
    source: dict[str, Any] | None, item: dict[str, Any] | None, mapping: TableMapping | None = None
) -> str:
    live = item is not None and not item.get("_deleted", False)
    if source is None:
        return "" if not live else "live in DynamoDB but deleted in the source"
    if item is None or not live:
        return "missing from DynamoDB"
    if mapping is None:  # the default mapping shape: every column, as is
        expected = {k: to_dynamodb_value(v) for k, v in source.items()}
        reserved = BOOKKEEPING
    else:
        try:
            expected = dynamodb_attributes(mapping, source)
        except UnrepresentableRow as exc:
            return f"the source row cannot be a DynamoDB item: {exc}"
        reserved = mapping.dynamodb.reserved_attributes
    actual = {k: v for k, v in item.items() if k not in reserved}
    differing = _differing(expected, actual)
    return f"DynamoDB differs in {differing}" if differing else ""


TableFor = Callable[[TableMapping], Any]


def fetch_sink_state(
    mapping: TableMapping, change: Change, opensearch_client: Any, table_for: TableFor, sleep: Sleep = time.sleep
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What OpenSearch (``_source``) and DynamoDB (the item) hold for the change's key (None: nothing)."""
    from opensearchpy.exceptions import NotFoundError, TransportError

    doc: dict[str, Any] | None = None
    if mapping.opensearch.enabled:
        doc_id = opensearch_document_id(mapping, change)
        for attempt in attempts(SHARD_START_ATTEMPTS, first_wait=0.2, most_wait=0.2, sleep=sleep, jitter=False):
            try:
                doc = opensearch_client.get(index=mapping.opensearch.index, id=doc_id)["_source"]
                break
            except NotFoundError:
                doc = None
                break
            except TransportError as exc:
                # an index just created (or recovering after a restart) answers 503 until its shard starts
                if exc.status_code != 503 or attempt == SHARD_START_ATTEMPTS - 1:
                    raise
    item = None
    if mapping.dynamodb.enabled:
        key = dynamodb_key(mapping, change)
        item = table_for(mapping).get_item(Key=key, ConsistentRead=True).get("Item")
    return doc, item


def compare_row(
    conn: Any,
    mapping: TableMapping,
    change: Change,
    opensearch_client: Any,
    dynamodb_table: Any,
    other_dynamodb_tables: Callable[[str], Any] | None = None,
) -> RowComparison:
    """Read the row from the source and from both sinks and say where they differ.

    ``dynamodb_table`` is the stack's ReplicaTable; ``other_dynamodb_tables``
    gives the Table for a mapping that names its own (``dynamodb.table``).
    """

    def table_for(m: TableMapping) -> Any:
        if m.dynamodb.table is None:
            return dynamodb_table
        if other_dynamodb_tables is None:
            raise ValueError(f"{m.table} maps to DynamoDB table {m.dynamodb.table!r}; pass other_dynamodb_tables")
        return other_dynamodb_tables(m.dynamodb.table)

    source = read_source_row(conn, mapping, change)
    doc, item = fetch_sink_state(mapping, change, opensearch_client, table_for)
    return RowComparison(
        key=change.document_id,
        source=source,
        opensearch=doc,
        dynamodb=item,
        opensearch_problem=opensearch_problem(mapping, source, doc) if mapping.opensearch.enabled else "",
        dynamodb_problem=dynamodb_problem(source, item, mapping) if mapping.dynamodb.enabled else "",
    )
