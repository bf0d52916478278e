"""Reconcile: do the source and each sink agree, table by table? And optionally repair what differs.

Three kinds of drift, per table and sink:

- **missing**: a source row the sink does not hold (or holds as a tombstone);
- **stale**: the sink holds the row with other content — the comparison is
  :mod:`fanout.operations.verify`'s, built from the mapping with the fetcher's own
  builders (renames, exclusions, projections, key formats, conversions);
- **orphan**: the sink holds a live row the source does not have.

Two more counts are not drift, and no repair can clear them:

- **refused**: a source row the sink can never take as the mapping shapes it
  (an item above DynamoDB's 400 KB, a value with no form in the sink, or a
  write the sink refused during the repair), with the reason. The fetcher
  recorded it in the dead-letter queue when it met it; reconcile reports it on
  every run but neither repairs it nor records it again;
- **unchecked**: a source row whose comparison failed (a sink read failed, a
  value could not be compared), with the reason: nothing is skipped silently.

Full mode streams both sides in constant memory: source rows in keyset pages
(plain, non-locking reads), each page looked up in OpenSearch (an ``ids``
query) and DynamoDB (BatchGetItem, consistent); then each sink is scanned
(OpenSearch ``search_after`` sorted by ``_id``; DynamoDB Scan pages filtered to
the table's live items) and its keys, parsed back with the mapping's key
formats (:mod:`fanout.model.sink_keys`), are checked against the source in batches.
Sample mode compares a random sample of source rows (missing and stale), and
looks for orphans in a uniform random sample of each sink of about the same
size: the top documents by a seeded ``random_score`` in OpenSearch, and one
random segment of a DynamoDB parallel scan (``Segment``/``TotalSegments`` split
the table by key hash). Orphans often come in key ranges (a bulk delete made
with the kill switch on); a uniform sample finds such a cluster in proportion
to its size, wherever it sits in the key order.

``repair`` hands every drifted key to :meth:`fanout.pipeline.fetcher.Fetcher.apply`,
the live fetch path: the row is re-read under a lock and written
version-gated, so a repair can never overwrite a newer live change; for an
orphan the re-read finds no row and the sinks get a versioned delete
(OpenSearch) and a tombstone (DynamoDB). A drift the repair could not clear (a
sink holding a higher version, a failed write) stays counted as unrepaired. A
sink entry whose id is no key of the table (written by
hand, or under an older mapping's id format) cannot be re-read: repair deletes
it directly, which no live change can race, as the fetch path never writes
such an id.

Reconcile while changes flow can see a row in flight (inserted, not yet
fetched) as missing: that is reported like any drift; repairing it is
harmless (versions decide), and a second run confirms.

Here: the run, table by table. Beside it: ``report`` (tallies and verdict),
``source_rows`` (the source side), ``orphans`` (the sink side), ``repair``; the sink
reads are :mod:`fanout.sinks.readers`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from fanout.model.mapping import Mappings
from fanout.observability import log
from fanout.operations.reconcile.orphans import dynamodb_entries, opensearch_entries, scan_orphans
from fanout.operations.reconcile.repair import Repairer
from fanout.operations.reconcile.report import DYNAMODB, OPENSEARCH, ReconcileProgress, ReconcileReport
from fanout.operations.reconcile.source_rows import compare_page, sample_pages, source_pages
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.readers import SinkReaders
from fanout.source.keyset import estimated_rows

# What callers use beside reconcile(): the readers it takes, the report and progress it gives.
__all__ = ["ReconcileProgress", "ReconcileReport", "SinkReaders", "reconcile"]


def reconcile(
    conn: Any,
    mappings: Mappings,
    readers: SinkReaders,
    *,
    tables: Sequence[str] | None = None,
    sample: int | None = None,
    page_size: int = 500,
    repair: bool = False,
    fetcher: Fetcher | None = None,
    progress: Callable[[ReconcileProgress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReconcileReport:
    """Compare (and with ``repair``, fix) every mapped table, or ``tables``; ``sample``: that many random rows
    per table instead of all, and orphans looked for in a sample of each sink of about that size. ``conn`` is
    an autocommit connection for the plain reads; repairs go through ``fetcher`` (the fetch path)."""
    names = list(tables) if tables else sorted(mappings.tables)
    for name in names:
        if mappings.get(name) is None:
            raise ValueError(f"{name!r} is not a mapped table (tables.json)")
    if repair and fetcher is None:
        raise ValueError("repair needs the fetch path: pass the fetcher")
    report = ReconcileReport(mode="sample" if sample else "full", repair=repair)
    repairer = Repairer(fetcher, report) if repair and fetcher is not None else None
    started = clock()

    def tell(table: str, phase: str, done: int, total: int | None = None) -> None:
        if progress is not None:
            progress(ReconcileProgress(table, phase, done, total, clock() - started))

    for name in names:
        mapping = mappings.get(name)
        assert mapping is not None
        for sink, enabled in ((OPENSEARCH, mapping.opensearch.enabled), (DYNAMODB, mapping.dynamodb.enabled)):
            if enabled:
                report.tally(name, sink)
        estimated = sample or (estimated_rows(conn, mapping) if progress else None)
        pages = sample_pages(conn, mapping, sample, page_size) if sample else source_pages(conn, mapping, page_size)
        done = 0
        for rows in pages:
            drifted = compare_page(mapping, rows, readers, report)
            if repairer is not None:
                repairer.repair(mapping, drifted)
            done += len(rows)
            tell(name, "source", done, estimated)
        report.source_rows[name] = done
        if mapping.opensearch.enabled:
            entries = opensearch_entries(readers, mapping, sample, page_size)
            on_page = functools.partial(tell, name, "opensearch", total=estimated)
            scan_orphans(conn, mapping, OPENSEARCH, entries, report, repairer, readers, on_page)
        if mapping.dynamodb.enabled:
            entries = dynamodb_entries(conn, readers, mapping, sample, page_size)
            on_page = functools.partial(tell, name, "dynamodb", total=estimated)
            scan_orphans(conn, mapping, DYNAMODB, entries, report, repairer, readers, on_page)
    report.elapsed_s = clock() - started
    log(logging.INFO, "reconcile finished", drift=report.drift, unrepaired=report.unrepaired, mode=report.mode)
    return report
