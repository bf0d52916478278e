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

``repair`` hands every drifted key to :func:`fanout.pipeline.fetcher.apply_changes`,
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
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import FULL_KEY_FIELD, Mappings, TableMapping
from fanout.model.sink_keys import dynamodb_item_key, opensearch_key
from fanout.observability import log
from fanout.operations.backfill import Key, after_key_sql, key_bound_params, key_changes
from fanout.operations.verify import dynamodb_problem, opensearch_problem
from fanout.pipeline.fetcher import FetchFailed, ReadRow, Reject, apply_changes
from fanout.redaction import describe_error
from fanout.sinks import Outcome, Sink
from fanout.sinks.documents import dynamodb_key, dynamodb_refusal, opensearch_document_id, opensearch_refusal
from fanout.sinks.dynamodb import read_numbers_exactly
from fanout.source.compose import composed_page
from fanout.source.reader import _quote
from fanout.source.values import typed_row

OPENSEARCH, DYNAMODB = "opensearch", "dynamodb"
MISSING, STALE, ORPHAN = "missing", "stale", "orphan"
REFUSED, UNCHECKED = "refused", "unchecked"  # reported beside the drift, never repaired
KINDS = (MISSING, STALE, ORPHAN, REFUSED, UNCHECKED)
MAX_EXAMPLES = 20  # per table, sink and kind: the report stays small on a big drift
BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem keys per request
MAX_RESULT_WINDOW = 10_000  # OpenSearch's default index.max_result_window: the most hits one search returns


@dataclass
class SinkTally:
    checked: int = 0
    missing: int = 0
    stale: int = 0
    orphan: int = 0
    refused: int = 0
    unchecked: int = 0
    repaired: int = 0
    unrepaired: int = 0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.orphan

    def add(self, kind: str, key: Any, detail: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append({"key": key, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "missing": self.missing,
            "stale": self.stale,
            "orphan": self.orphan,
            "refused": self.refused,
            "unchecked": self.unchecked,
            "repaired": self.repaired,
            "unrepaired": self.unrepaired,
            "examples": {k: v for k, v in self.examples.items() if v},
        }


@dataclass
class ReconcileReport:
    mode: str
    repair: bool
    tables: dict[str, dict[str, SinkTally]] = field(default_factory=dict)
    source_rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def tally(self, table: str, sink: str) -> SinkTally:
        return self.tables.setdefault(table, {}).setdefault(sink, SinkTally())

    @property
    def drift(self) -> int:
        return sum(t.drift for sinks in self.tables.values() for t in sinks.values())

    @property
    def unrepaired(self) -> int:
        if not self.repair:
            return self.drift
        return sum(t.unrepaired for sinks in self.tables.values() for t in sinks.values())

    @property
    def refused(self) -> int:
        return sum(t.refused for sinks in self.tables.values() for t in sinks.values())

    @property
    def unchecked(self) -> int:
        return sum(t.unchecked for sinks in self.tables.values() for t in sinks.values())

    @property
    def agrees(self) -> bool:
        """Everything agrees now: nothing found, or everything found was repaired; and no row was refused
        by a sink or left unchecked."""
        return self.unrepaired == 0 and self.refused == 0 and self.unchecked == 0

    @property
    def rows_per_s(self) -> float:
        rows = sum(self.source_rows.values())
        return rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "repair": self.repair,
            "agrees": self.agrees,
            "drift": self.drift,
            "unrepaired": self.unrepaired,
            "refused": self.refused,
            "unchecked": self.unchecked,
            "source_rows": self.source_rows,
            "elapsed_s": round(self.elapsed_s, 3),
            "source_rows_per_s": round(self.rows_per_s, 1),
            "tables": {t: {s: tally.as_dict() for s, tally in sinks.items()} for t, sinks in self.tables.items()},
        }

    def summary(self) -> str:
        lines = []
        for table, sinks in self.tables.items():
            for sink, t in sinks.items():
                line = (
                    f"{table} -> {sink}: {t.checked} checked, {t.missing} missing, {t.stale} stale, "
                    f"{t.orphan} orphan{'s' if t.orphan != 1 else ''}"
                )
                line += f", {t.refused} refused" if t.refused else ""
                line += f", {t.unchecked} unchecked" if t.unchecked else ""
                if self.repair:
                    line += f"; repaired {t.repaired}, unrepaired {t.unrepaired}"
                lines.append(line)
        verdict = "source and sinks agree" if self.agrees else f"DRIFT: {self.unrepaired} difference(s) remain"
        if self.refused:
            verdict += f"; {self.refused} row(s) refused by a sink (see the reasons; fix the mapping, then backfill)"
        if self.unchecked:
            verdict += f"; {self.unchecked} row(s) could not be checked"
        lines.append(f"{verdict} [{self.mode}, {self.elapsed_s:.1f}s]")
        return "\n".join(lines)


@dataclass
class ReconcileProgress:
    table: str
    phase: str  # "source", "opensearch orphans", "dynamodb orphans"
    done: int
    estimated_total: int | None
    elapsed_s: float


class SinkReaders:
    """Batched reads of what the sinks hold, with the clients reconcile is given."""

    def __init__(self, opensearch: Any, dynamodb: Any, default_table: str) -> None:
        # opensearch-py client reading JSON numbers exactly (fanout.sinks.opensearch.make_client)
        self.opensearch = opensearch
        # boto3 DynamoDB service resource, made to read an N of any length (one such item must not fail a page)
        self.dynamodb = read_numbers_exactly(dynamodb)
        self.default_table = default_table

    def table_name(self, mapping: TableMapping) -> str:
        return mapping.dynamodb_table or self.default_table

    def documents(self, mapping: TableMapping, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The live documents with these ids. ``_mget`` is real-time (a search sees a write only after the
        index's next refresh, so a row written a moment ago would look missing)."""
        if not ids:
            return {}
        found = self.opensearch.mget(index=mapping.opensearch_index, body={"ids": list(ids)})
        documents: dict[str, dict[str, Any]] = {}
        for doc in found["docs"]:
            error = doc.get("error")
            if error is not None:
                if (error.get("type") if isinstance(error, dict) else None) == "index_not_found_exception":
                    continue  # no index yet: nothing is there
                raise RuntimeError(f"OpenSearch could not read {mapping.opensearch_index}/{doc.get('_id')}: {error}")
            if doc.get("found"):
                documents[doc["_id"]] = doc["_source"]
        return documents

    def items(self, mapping: TableMapping, keys: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
        name = self.table_name(mapping)
        items: list[dict[str, Any]] = []
        for i in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {name: {"Keys": list(keys[i : i + BATCH_GET_LIMIT]), "ConsistentRead": True}}
            for attempt in range(10):
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                items += answer.get("Responses", {}).get(name, [])
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(2.0, 0.05 * 2**attempt))
            if request:
                raise RuntimeError(f"DynamoDB kept {len(request[name]['Keys'])} keys of {name} unprocessed")
        return items

    def document_ids(self, mapping: TableMapping, page_size: int) -> Iterator[list[tuple[str, Any]]]:
        """Every document's (id, full key kept for a bounded id or None), a page at a time, in id order."""
        from opensearchpy.exceptions import NotFoundError

        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": {"match_all": {}}, "size": page_size, "sort": [{"_id": "asc"}]}
            body.update(_source=[FULL_KEY_FIELD], track_total_hits=False)  # no count per page: it would cost a pass
            if after is not None:
                body["search_after"] = after
            try:
                hits = self.opensearch.search(index=mapping.opensearch_index, body=body)["hits"]["hits"]
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
            hits = self.opensearch.search(index=mapping.opensearch_index, body=body)["hits"]["hits"]
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


def _change(mapping: TableMapping, key: Key) -> Change:
    return Change(mapping.table, tuple(zip(mapping.key_columns, key, strict=True)), "update", 1)


def _source_rows_sql(mapping: TableMapping, after: Key | None, limit: int) -> tuple[str, list[Any]]:
    columns = "*" if mapping.columns is None else ", ".join(_quote(c) for c in mapping.columns)
    sql = f"SELECT {columns} FROM {_quote(mapping.table)}"  # noqa: S608 - identifiers from the mapping
    params: list[Any] = []
    if after is not None:
        sql += " WHERE " + after_key_sql(mapping.key_columns)
        params = key_bound_params(after)
    sql += " ORDER BY " + ", ".join(_quote(c) for c in mapping.key_columns) + f" LIMIT {int(limit)}"
    return sql, params


def source_pages(conn: Any, mapping: TableMapping, page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Every source row (as the fetcher reads it), in key order, one keyset page at a time, no locks."""
    after: Key | None = None
    while True:
        sql, params = _source_rows_sql(mapping, after, page_size)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = [typed_row(cur, found, mapping) for found in cur.fetchall()]
        if not rows:
            return
        yield rows if mapping.composition is None else composed_page(conn, mapping, rows)
        after = tuple(rows[-1][c] for c in mapping.key_columns)
        if len(rows) < page_size:
            return


def sample_pages(conn: Any, mapping: TableMapping, size: int, page_size: int) -> Iterator[list[dict[str, Any]]]:
    """About ``size`` rows picked at random (each row with the same probability, from InnoDB's row
    estimate), without sorting the table; slightly biased to the start when the estimate is low."""
    from fanout.operations.backfill import estimated_rows

    total = estimated_rows(conn, mapping) or size
    probability = min(1.0, 1.2 * size / max(total, 1))
    columns = "*" if mapping.columns is None else ", ".join(_quote(c) for c in mapping.columns)
    sql = f"SELECT {columns} FROM {_quote(mapping.table)} WHERE RAND() < %s LIMIT {int(size)}"  # noqa: S608
    with conn.cursor() as cur:
        cur.execute(sql, (probability,))
        rows = [typed_row(cur, found, mapping) for found in cur.fetchall()]
    if mapping.composition is not None:  # the composed documents of the sampled roots that pass the filter
        rows = composed_page(conn, mapping, rows)
    for i in range(0, len(rows), page_size):
        yield rows[i : i + page_size]


def existing_keys(conn: Any, mapping: TableMapping, keys: Sequence[Key]) -> set[Key]:
    """Which of these keys exist in the source, exactly (not merely equal under a collation)."""
    if not keys:
        return set()
    one = "(" + " AND ".join(f"{_quote(c)} = %s" for c in mapping.key_columns) + ")"
    listed = ", ".join(_quote(c) for c in mapping.key_columns)
    sql = f"SELECT {listed} FROM {_quote(mapping.table)} WHERE " + " OR ".join([one] * len(keys))  # noqa: S608
    with conn.cursor() as cur:
        cur.execute(sql, [v for key in keys for v in key])
        stored = {tuple(row) for row in cur.fetchall()}
    if mapping.composition is not None:  # a root that does not pass the filter has no document
        roots = [dict(zip(mapping.key_columns, key, strict=True)) for key in keys if key in stored]
        stored = {tuple(row[c] for c in mapping.key_columns) for row in composed_page(conn, mapping, roots)}
    return {key for key in keys if key in stored}


class _Repairer:
    """Hands drifted keys to the fetch path and counts, per sink, what it cleared."""

    def __init__(
        self,
        mappings: Mappings,
        read_row: ReadRow,
        sinks: Sequence[Sink],
        reject: Reject | None,
        report: ReconcileReport,
    ) -> None:
        self.mappings, self.read_row, self.sinks, self.reject, self.report = mappings, read_row, sinks, reject, report

    def repair(self, mapping: TableMapping, drifted: dict[Key, set[str]]) -> None:
        if not drifted:
            return
        changes, _ = key_changes(mapping, self.mappings, list(drifted), "reconcile-repair", self.reject)
        outcomes: dict[tuple[str, str], str] = {}
        refusals: dict[tuple[str, str], str] = {}

        def refused(reason: str, payload: Any, correlation_id: str) -> None:
            # A row a sink refuses now was refused (and recorded) when the fetcher met it: reconcile reports
            # it on every run instead of adding a dead letter each time.
            sink, _, detail = reason.partition(": ")
            for message in payload.get("changes", []) if isinstance(payload, dict) else []:
                key = tuple(message.get("pk", {}).get(c) for c in mapping.key_columns)
                refusals[(_change(mapping, key).document_id, sink)] = detail

        try:
            fetched = apply_changes(changes, self.mappings, self.read_row, self.sinks, refused)
            for o in fetched.outcomes:
                outcomes[(str(o["key"]), str(o["sink"]))] = str(o["outcome"])
        except FetchFailed as exc:
            log(logging.ERROR, "reconcile repair failed", table=mapping.table, error=str(exc))
        for key, sinks in drifted.items():
            document_id = _change(mapping, key).document_id
            for sink in sinks:
                tally = self.report.tally(mapping.table, sink)
                cleared = outcomes.get((document_id, sink)) in (Outcome.WRITTEN.value, Outcome.DELETED.value)
                if (document_id, sink) in refusals:
                    tally.add(REFUSED, list(key), f"refused when repaired: {refusals[(document_id, sink)]}")
                elif cleared:
                    tally.repaired += 1
                else:
                    tally.unrepaired += 1


def _compare_page(
    mapping: TableMapping,
    rows: list[dict[str, Any]],
    readers: SinkReaders,
    report: ReconcileReport,
) -> dict[Key, set[str]]:
    """Compare a page of source rows with each sink; the keys to repair, with the sinks that differ.

    Every row is counted once per sink: checked and in agreement, drift (missing, stale), refused (the sink
    can never take it: not repaired) or unchecked (with the reason). A failed read of the sink leaves its
    whole page unchecked, never the rest of the run.
    """
    drifted: dict[Key, set[str]] = {}
    keyed: list[tuple[Key, Change, dict[str, Any]]] = []
    for row in rows:
        key = tuple(row[c] for c in mapping.key_columns)
        keyed.append((key, _change(mapping, key), row))
    version = int(time.time() * 1_000_000)  # sizes an item as the fetcher's would be (a version of today)
    if mapping.opensearch_enabled:
        tally = report.tally(mapping.table, OPENSEARCH)
        try:
            docs = readers.documents(mapping, [opensearch_document_id(mapping, change) for _, change, _ in keyed])
        except Exception as exc:  # noqa: BLE001 - reported as this page's unchecked rows
            _unchecked(mapping, OPENSEARCH, tally, keyed, exc)
        else:
            for key, change, row in keyed:
                tally.checked += 1
                try:
                    doc = docs.get(opensearch_document_id(mapping, change))
                    problem = opensearch_problem(mapping, row, doc)
                    refusal = opensearch_refusal(mapping, row) if problem else ""  # only a differing row
                except Exception as exc:  # noqa: BLE001 - one row must not stop the check
                    tally.add(UNCHECKED, list(key), f"could not compare: {describe_error(exc)}")
                    continue
                if refusal:
                    tally.add(REFUSED, list(key), f"OpenSearch cannot hold it: {refusal}")
                elif problem:
                    tally.add(MISSING if doc is None else STALE, list(key), problem)
                    drifted.setdefault(key, set()).add(OPENSEARCH)
    if mapping.dynamodb_enabled:
        tally = report.tally(mapping.table, DYNAMODB)
        attributes = sorted(mapping.dynamodb_key_attributes)
        try:
            sink_keys = {
                key: dynamodb_key(mapping, change) for key, change, row in keyed if not _empty_key(mapping, change)
            }
            found = readers.items(mapping, list(sink_keys.values()))
        except Exception as exc:  # noqa: BLE001 - reported as this page's unchecked rows
            _unchecked(mapping, DYNAMODB, tally, keyed, exc)
        else:
            by_key = {tuple(item.get(a) for a in attributes): item for item in found}
            for key, change, row in keyed:
                tally.checked += 1
                try:
                    item = by_key.get(tuple(sink_keys[key][a] for a in attributes)) if key in sink_keys else None
                    problem = dynamodb_problem(row, item, mapping)
                    refusal = dynamodb_refusal(mapping, change, row, version) if problem else ""
                except Exception as exc:  # noqa: BLE001 - one row must not stop the check
                    tally.add(UNCHECKED, list(key), f"could not compare: {describe_error(exc)}")
                    continue
                if refusal:
                    tally.add(REFUSED, list(key), f"DynamoDB cannot hold it: {refusal}")
                elif problem:
                    live = item is not None and not item.get("_deleted", False)
                    tally.add(STALE if live else MISSING, list(key), problem)
                    drifted.setdefault(key, set()).add(DYNAMODB)
    return drifted


def _empty_key(mapping: TableMapping, change: Change) -> bool:
    """A key that renders empty: the sink refuses the row (reported as refused), there is nothing to look up."""
    try:
        dynamodb_key(mapping, change)
    except ValueError:
        return True
    return False


def _unchecked(
    mapping: TableMapping, sink: str, tally: SinkTally, keyed: list[tuple[Key, Change, dict[str, Any]]], exc: Exception
) -> None:
    log(logging.ERROR, "reconcile could not read a page from a sink", table=mapping.table, sink=sink,
        rows=len(keyed), error=describe_error(exc))  # fmt: skip
    for key, _, _ in keyed:
        tally.checked += 1
        tally.add(UNCHECKED, list(key), f"could not read {sink}: {describe_error(exc)}")


def _remove_foreign(readers: SinkReaders, mapping: TableMapping, sink: str, entry: Any) -> bool:
    """Delete a sink entry whose id is no key of the table (``entry``: the document id, or the item)."""
    from botocore.exceptions import ClientError
    from opensearchpy.exceptions import NotFoundError

    try:
        if sink == OPENSEARCH:
            readers.opensearch.delete(index=mapping.opensearch_index, id=entry)
        else:
            readers.dynamodb.Table(readers.table_name(mapping)).delete_item(
                Key={a: entry[a] for a in mapping.dynamodb_key_attributes},
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


SinkEntry = tuple[Key | None, str, Any]  # (the table key it parses to, its id as shown, what deletes it)


def _orphans(
    conn: Any,
    mapping: TableMapping,
    sink: str,
    pages: Iterator[list[SinkEntry]],
    report: ReconcileReport,
    repairer: _Repairer | None,
    readers: SinkReaders,
    on_page: Callable[[int], None],
) -> None:
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


def reconcile(
    conn: Any,
    mappings: Mappings,
    readers: SinkReaders,
    *,
    tables: Sequence[str] | None = None,
    sample: int | None = None,
    page_size: int = 500,
    repair: bool = False,
    read_row: ReadRow | None = None,
    sinks: Sequence[Sink] = (),
    reject: Reject | None = None,
    progress: Callable[[ReconcileProgress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReconcileReport:
    """Compare (and with ``repair``, fix) every mapped table, or ``tables``; ``sample``: that many random rows
    per table instead of all, and orphans looked for in a sample of each sink of about that size. ``conn`` is
    an autocommit connection for the plain reads; repairs go through ``read_row`` and ``sinks`` (the fetch
    path)."""
    from fanout.operations.backfill import estimated_rows

    names = list(tables) if tables else sorted(mappings.tables)
    for name in names:
        if mappings.get(name) is None:
            raise ValueError(f"{name!r} is not a mapped table (tables.json)")
    if repair and read_row is None:
        raise ValueError("repair needs the fetch path: pass read_row and sinks")
    report = ReconcileReport(mode="sample" if sample else "full", repair=repair)
    repairer = _Repairer(mappings, read_row, sinks, reject, report) if repair and read_row is not None else None
    started = clock()

    def tell(table: str, phase: str, done: int, total: int | None = None) -> None:
        if progress is not None:
            progress(ReconcileProgress(table, phase, done, total, clock() - started))

    for name in names:
        mapping = mappings.get(name)
        assert mapping is not None
        for sink, enabled in ((OPENSEARCH, mapping.opensearch_enabled), (DYNAMODB, mapping.dynamodb_enabled)):
            if enabled:
                report.tally(name, sink)
        estimated = sample or (estimated_rows(conn, mapping) if progress else None)
        pages = sample_pages(conn, mapping, sample, page_size) if sample else source_pages(conn, mapping, page_size)
        done = 0
        for rows in pages:
            drifted = _compare_page(mapping, rows, readers, report)
            if repairer is not None:
                repairer.repair(mapping, drifted)
            done += len(rows)
            tell(name, "source", done, estimated)
        report.source_rows[name] = done
        if mapping.opensearch_enabled:
            id_pages = (
                readers.random_document_ids(mapping, sample, page_size)
                if sample
                else readers.document_ids(mapping, page_size)
            )
            os_pages = (
                [(opensearch_key(mapping, doc_id, full_key), doc_id, doc_id) for doc_id, full_key in ids]
                for ids in id_pages
            )
            _orphans(
                conn,
                mapping,
                OPENSEARCH,
                os_pages,
                report,
                repairer,
                readers,
                functools.partial(tell, name, "opensearch", total=estimated),
            )
        if mapping.dynamodb_enabled:
            segment = None
            if sample:  # one random segment of a parallel scan holds about `sample` of the table's items
                segments = max(1, math.ceil((estimated_rows(conn, mapping) or 0) / sample))
                segment = (random.randrange(segments), segments)
            partition = mapping.dynamodb_partition_key.attribute
            ddb_pages = (
                [(dynamodb_item_key(mapping, item), str(item.get(partition)), item) for item in items]
                for items in readers.live_items(mapping, page_size, segment)
            )
            _orphans(
                conn,
                mapping,
                DYNAMODB,
                ddb_pages,
                report,
                repairer,
                readers,
                functools.partial(tell, name, "dynamodb", total=estimated),
            )
    report.elapsed_s = clock() - started
    log(logging.INFO, "reconcile finished", drift=report.drift, unrepaired=report.unrepaired, mode=report.mode)
    return report
