"""The source side of reconcile: the table's rows (all, or a sample), a page at a time, each compared with each sink.

Every row is counted once per sink: checked and in agreement, drift (missing, stale),
refused (the sink can never take it: not repaired) or unchecked (with the reason). The
comparison is :mod:`fanout.operations.verify`'s, built with the fetcher's own builders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.observability import log
from fanout.operations.reconcile.report import (
    DYNAMODB,
    MISSING,
    OPENSEARCH,
    REFUSED,
    STALE,
    UNCHECKED,
    ReconcileReport,
    SinkTally,
)
from fanout.operations.verify import dynamodb_problem, opensearch_problem
from fanout.redaction import describe_error
from fanout.sinks.dynamodb import dynamodb_refusal
from fanout.sinks.opensearch import opensearch_refusal
from fanout.sinks.readers import SinkReaders
from fanout.source.composition_read import composed_page
from fanout.source.keyset import Key, estimated_rows, key_change, page_query
from fanout.source.rows import typed_row
from fanout.source.sql import quote_identifier, selected_columns

Rows = list[dict[str, Any]]
Keyed = list[tuple[Key, Change, dict[str, Any]]]  # a page's rows with their key and change
# What one row is in one sink: None when it agrees, else (kind, detail).
Verdict = tuple[str, str] | None


def source_pages(conn: Any, mapping: TableMapping, page_size: int) -> Iterator[Rows]:
    """Every source row (as the fetcher reads it), in key order, one keyset page at a time, no locks."""
    after: Key | None = None
    while True:
        sql, params = page_query(mapping, after, page_size, select=selected_columns(mapping))
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = [typed_row(cur, found, mapping) for found in cur.fetchall()]
        if not rows:
            return
        yield rows if mapping.composition is None else composed_page(conn, mapping, rows)
        after = tuple(rows[-1][c] for c in mapping.key_columns)
        if len(rows) < page_size:
            return


def sample_pages(conn: Any, mapping: TableMapping, size: int, page_size: int) -> Iterator[Rows]:
    """About ``size`` rows picked at random (each row with the same probability, from InnoDB's row
    estimate), without sorting the table; slightly biased to the start when the estimate is low."""
    total = estimated_rows(conn, mapping) or size
    probability = min(1.0, 1.2 * size / max(total, 1))
    table = quote_identifier(mapping.table)
    sql = f"SELECT {selected_columns(mapping)} FROM {table} WHERE RAND() < %s LIMIT {int(size)}"  # noqa: S608
    with conn.cursor() as cur:
        cur.execute(sql, (probability,))
        rows = [typed_row(cur, found, mapping) for found in cur.fetchall()]
    if mapping.composition is not None:  # the composed documents of the sampled roots that pass the filter
        rows = composed_page(conn, mapping, rows)
    for i in range(0, len(rows), page_size):
        yield rows[i : i + page_size]


def compare_page(
    mapping: TableMapping, rows: Rows, readers: SinkReaders, report: ReconcileReport
) -> dict[Key, set[str]]:
    """Compare a page of source rows with each sink; the keys to repair, with the sinks that differ.

    A failed read of a sink leaves its whole page unchecked, never the rest of the run.
    """
    drifted: dict[Key, set[str]] = {}
    keyed: Keyed = []
    for row in rows:
        key = tuple(row[c] for c in mapping.key_columns)
        keyed.append((key, key_change(mapping, key), row))
    if mapping.opensearch.enabled:
        _compare_sink(mapping, OPENSEARCH, keyed, report, drifted, lambda: _opensearch_judge(mapping, keyed, readers))
    if mapping.dynamodb.enabled:
        _compare_sink(mapping, DYNAMODB, keyed, report, drifted, lambda: _dynamodb_judge(mapping, keyed, readers))
    return drifted


Judge = Callable[[Key, Change, dict[str, Any]], Verdict]


def _compare_sink(
    mapping: TableMapping,
    sink: str,
    keyed: Keyed,
    report: ReconcileReport,
    drifted: dict[Key, set[str]],
    read: Callable[[], Judge],
) -> None:
    """Read the page from ``sink`` (``read`` returns the judge of one row) and count every row's verdict."""
    tally = report.tally(mapping.table, sink)
    try:
        judge = read()
    except Exception as exc:  # noqa: BLE001 - reported as this page's unchecked rows
        _unchecked(mapping, sink, tally, keyed, exc)
        return
    for key, change, row in keyed:
        tally.checked += 1
        try:
            verdict = judge(key, change, row)
        except Exception as exc:  # noqa: BLE001 - one row must not stop the check
            tally.add(UNCHECKED, list(key), f"could not compare: {describe_error(exc)}")
            continue
        if verdict is not None:
            kind, detail = verdict
            tally.add(kind, list(key), detail)
            if kind != REFUSED:
                drifted.setdefault(key, set()).add(sink)


def _opensearch_judge(mapping: TableMapping, keyed: Keyed, readers: SinkReaders) -> Judge:
    docs = readers.documents(mapping, [opensearch_document_id(mapping, change) for _, change, _ in keyed])

    def judge(key: Key, change: Change, row: dict[str, Any]) -> Verdict:
        doc = docs.get(opensearch_document_id(mapping, change))
        problem = opensearch_problem(mapping, row, doc)
        if not problem:
            return None
        refusal = opensearch_refusal(mapping, row)  # only for a differing row
        if refusal:
            return REFUSED, f"OpenSearch cannot hold it: {refusal}"
        return (MISSING if doc is None else STALE), problem

    return judge


def _dynamodb_judge(mapping: TableMapping, keyed: Keyed, readers: SinkReaders) -> Judge:
    version = int(time.time() * 1_000_000)  # sizes an item as the fetcher's would be (a version of today)
    attributes = sorted(mapping.dynamodb.key_attributes)
    sink_keys = {key: dynamodb_key(mapping, change) for key, change, _ in keyed if not _empty_key(mapping, change)}
    found = readers.items(mapping, list(sink_keys.values()))
    by_key = {tuple(item.get(a) for a in attributes): item for item in found}

    def judge(key: Key, change: Change, row: dict[str, Any]) -> Verdict:
        item = by_key.get(tuple(sink_keys[key][a] for a in attributes)) if key in sink_keys else None
        problem = dynamodb_problem(row, item, mapping)
        if not problem:
            return None
        refusal = dynamodb_refusal(mapping, change, row, version)
        if refusal:
            return REFUSED, f"DynamoDB cannot hold it: {refusal}"
        live = item is not None and not item.get("_deleted", False)
        return (STALE if live else MISSING), problem

    return judge


def _empty_key(mapping: TableMapping, change: Change) -> bool:
    """A key that renders empty: the sink refuses the row (reported as refused), there is nothing to look up."""
    try:
        dynamodb_key(mapping, change)
    except ValueError:
        return True
    return False


def _unchecked(mapping: TableMapping, sink: str, tally: SinkTally, keyed: Keyed, exc: Exception) -> None:
    log(logging.ERROR, "reconcile could not read a page from a sink", table=mapping.table, sink=sink,
        rows=len(keyed), error=describe_error(exc))  # fmt: skip
    for key, _, _ in keyed:
        tally.checked += 1
        tally.add(UNCHECKED, list(key), f"could not read {sink}: {describe_error(exc)}")
