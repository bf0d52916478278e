"""The sink side of reconcile: every key a sink holds (or a sample), looked up in the source; orphans counted.

An entry whose key the source does not have is an orphan: repair re-reads its key through
the fetch path, which finds no row and deletes it versioned. An entry whose id is no key of
the table (written by hand, or under an older mapping's id format) cannot be re-read: repair
deletes it directly, which no live change can race, as the fetch path never writes such an id.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fanout.model.mapping import TableMapping
from fanout.model.sink_keys import dynamodb_item_key, opensearch_key
from fanout.observability import log
from fanout.operations.reconcile.repair import Repairer
from fanout.operations.reconcile.report import OPENSEARCH, ORPHAN, ReconcileReport
from fanout.sinks.readers import SinkReaders
from fanout.source.composition_read import composed_page
from fanout.source.keyset import Key, estimated_rows
from fanout.source.sql import column_list, quote_identifier

SinkEntry = tuple[Key | None, str, Any]  # (the table key it parses to, its id as shown, what deletes it)


def opensearch_entries(
    readers: SinkReaders, mapping: TableMapping, sample: int | None, page_size: int
) -> Iterator[list[SinkEntry]]:
    """The index's documents (all in id order, or about ``sample`` at random), a page at a time."""
    pages = (
        readers.random_document_ids(mapping, sample, page_size) if sample else readers.document_ids(mapping, page_size)
    )
    for ids in pages:
        yield [(opensearch_key(mapping, doc_id, full_key), doc_id, doc_id) for doc_id, full_key in ids]


def dynamodb_entries(
    conn: Any, readers: SinkReaders, mapping: TableMapping, sample: int | None, page_size: int
) -> Iterator[list[SinkEntry]]:
    """The table's live items of this mapping (all, or one random segment of a parallel scan), a page at a time."""
    segment = None
    if sample:  # one random segment of a parallel scan holds about `sample` of the table's items
        segments = max(1, math.ceil((estimated_rows(conn, mapping) or 0) / sample))
        segment = (random.randrange(segments), segments)
    partition = mapping.dynamodb.partition_key.attribute
    for items in readers.live_items(mapping, page_size, segment):
        yield [(dynamodb_item_key(mapping, item), str(item.get(partition)), item) for item in items]


def existing_keys(conn: Any, mapping: TableMapping, keys: Sequence[Key]) -> set[Key]:
    """Which of these keys exist in the source, exactly (not merely equal under a collation)."""
    if not keys:
        return set()
    one = "(" + " AND ".join(f"{quote_identifier(c)} = %s" for c in mapping.key_columns) + ")"
    listed = column_list(mapping.key_columns)
    sql = f"SELECT {listed} FROM {quote_identifier(mapping.table)} WHERE " + " OR ".join([one] * len(keys))  # noqa: S608
    with conn.cursor() as cur:
        cur.execute(sql, [v for key in keys for v in key])
        stored = {tuple(row) for row in cur.fetchall()}
    if mapping.composition is not None:  # a root that does not pass the filter has no document
        roots = [dict(zip(mapping.key_columns, key, strict=True)) for key in keys if key in stored]
        stored = {tuple(row[c] for c in mapping.key_columns) for row in composed_page(conn, mapping, roots)}
    return {key for key in keys if key in stored}


def scan_orphans(
    conn: Any,
    mapping: TableMapping,
    sink: str,
    pages: Iterator[list[SinkEntry]],
    report: ReconcileReport,
    repairer: Repairer | None,
    readers: SinkReaders,
    on_page: Callable[[int], None],
) -> None:
    """Count (and with ``repairer``, repair) the entries of ``pages`` the source does not have."""
    tally = report.tally(mapping.table, sink)
    seen = 0
    for page in pages:
        parsed = [key for key, _, _ in page if key is not None]
        present = existing_keys(conn, mapping, parsed)
        suspects = [entry for entry in page if entry[0] is None or entry[0] not in present]
        if sink == OPENSEARCH and suspects:  # a search lags deletes until the next refresh: confirm in real time
            live = readers.documents(mapping, [doc_id for _, _, doc_id in suspects])
            suspects = [entry for entry in suspects if entry[2] in live]
        drifted: dict[Key, set[str]] = {}
        for key, sink_key, entry in suspects:
            if key is None:
                tally.add(ORPHAN, None, f"{sink} key {sink_key!r} is no key of {mapping.table}")
                if repairer is not None:
                    removed = _remove_foreign(readers, mapping, sink, entry)
                    tally.repaired += removed
                    tally.unrepaired += not removed
            else:
                tally.add(ORPHAN, list(key), f"in {sink} ({sink_key!r}) but not in the source")
                drifted[key] = {sink}
        if repairer is not None:
            repairer.repair(mapping, drifted)
        seen += len(page)
        on_page(seen)


def _remove_foreign(readers: SinkReaders, mapping: TableMapping, sink: str, entry: Any) -> bool:
    """Delete a sink entry whose id is no key of the table (``entry``: the document id, or the item)."""
    from botocore.exceptions import ClientError
    from opensearchpy.exceptions import NotFoundError

    try:
        if sink == OPENSEARCH:
            readers.opensearch.delete(index=mapping.opensearch.index, id=entry)
        else:
            readers.dynamodb.Table(readers.table_name(mapping)).delete_item(
                Key={a: entry[a] for a in mapping.dynamodb.key_attributes},
                ConditionExpression="#t = :t",  # still this table's: never another table's item
                ExpressionAttributeNames={"#t": "_table"},
                ExpressionAttributeValues={":t": mapping.table},
            )
        return True
    except NotFoundError:
        return True  # gone already
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return True
        log(logging.ERROR, "reconcile could not delete a foreign entry", table=mapping.table, sink=sink)
        return False
