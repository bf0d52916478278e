"""Reindex: rebuild a table's OpenSearch index as a new generation beside live changes, then swap the alias.

``fanout reindex TABLE`` (and the maintenance function's ``reindex`` action) runs :func:`run_reindex`:

1. **Open** the next generation ``<alias>.g<n+1>`` from the current mapping (``index_mappings``,
   ``index_settings``, fanout's ``gc_deletes``; refresh off while it is filled) and add it to the write set
   (:mod:`fanout.sinks.generations`): from then on every fetcher writes live changes to both generations,
   version-gated in each.
2. **Settle**: wait until every fetcher's cached write set has been read again (``settle_seconds``),
   so no live write made after the copy starts misses the new generation (docs/architecture.md, "Reindex").
3. **Copy** every row from the source into the new generation only, with the backfill machinery: keyset
   pages, the locking re-read, ``external_gte`` versions, a checkpoint per page (per key range with
   workers), so a run killed at any point resumes where it stopped. DynamoDB is not touched.
4. **Verify**: refresh, then reconcile the new generation against the source (no repair); the keys found
   differing are looked at again alone, a settle apart (a row in flight through the pipeline clears
   itself). Drift still there after ``verify_attempts`` looks stops the run before the swap, saying what.
5. **Swap** the search alias to the new generation in one ``_aliases`` call. A concrete index from before
   aliases is replaced by the alias in the same call (``remove_index``): a search never finds nothing.

The old generation stays in the write set, current, for ``--rollback`` (the alias back, one call) until
``--drop-old`` takes it out of the write set, waits for the fetchers to see that, and deletes it.

The state is OpenSearch's own (which indices the alias and the write set name) and the copy's checkpoints in
``fanout_backfill_checkpoint``: running the same command again continues whatever step was interrupted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fanout.model.mapping import Mappings, TableMapping
from fanout.observability import log
from fanout.operations.backfill import DONE, RUNNING, BackfillJob, BackfillProgress
from fanout.operations.backfill_parallel import RunRange, run_parallel_backfill
from fanout.operations.reconcile import ReconcileReport, SinkReaders, reconcile
from fanout.operations.reconcile.report import KINDS, OPENSEARCH, ORPHAN
from fanout.operations.reconcile.source_rows import compare_page
from fanout.sinks.generations import (
    FIRST_GENERATION,
    TARGETS_TTL_SECONDS,
    alias_indices,
    generation_name,
    generation_number,
    index_body,
    settle_seconds,
    write_set,
)
from fanout.source.composition_read import composed_page
from fanout.source.keyset import Key, KeyRange, key_change, page_query
from fanout.source.rows import typed_row
from fanout.source.sql import selected_columns

DEFAULT_VERIFY_ATTEMPTS = 3
# After the write set loses an index, a fetcher that read the set just before may still be sending a _bulk
# with it: the client's timeout (10 s) times its attempts (3), beyond the cache's own lifetime.
REQUEST_BOUND_SECONDS = 30.0


class ReindexError(RuntimeError):
    """The reindex cannot go on as asked; the message says why and what to do."""


@dataclass(frozen=True)
class IndexState:
    """What OpenSearch says about one table's index: the index searches use and the write set."""

    alias: str
    searched: str | None  # the generation behind the alias; the alias name itself for a concrete index
    writes: tuple[str, ...]
    concrete: bool  # the name in tables.json is still a concrete index (from before aliases)

    @property
    def others(self) -> tuple[str, ...]:
        """Generations written but not searched: a reindex in progress, or one kept for rollback."""
        return tuple(index for index in self.writes if index != self.searched)

    def as_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "searched": self.searched, "writes": list(self.writes), "concrete": self.concrete}


def read_state(client: Any, alias: str) -> IndexState:
    searched = alias_indices(client, alias)
    writes = alias_indices(client, write_set(alias))
    if searched:
        return IndexState(alias, searched[0], writes, concrete=False)
    if client.indices.exists(index=alias):
        return IndexState(alias, alias, writes or (alias,), concrete=True)
    return IndexState(alias, None, writes, concrete=False)


@dataclass
class ReindexResult:
    table: str
    status: str  # "swapped", "drift" (refused to swap), "copying" (stopped early), "rolled-back", "dropped"
    alias: str
    old: str | None = None
    new: str | None = None
    copy: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def clean(self) -> bool:
        return self.status in ("swapped", "rolled-back", "dropped")

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "status": self.status,
            "alias": self.alias,
            "old": self.old,
            "new": self.new,
            "copy": self.copy,
            "verify": self.verify,
            "drift": self.drift,
            "dropped": self.dropped,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass
class Reindex:
    """One table's reindex on an OpenSearch client; the copy's workers are ``runners`` (each a
    ``Maintenance.copy``: its own connections and a sink pinned to the job's generation)."""

    client: Any
    conn: Any  # autocommit: the copy's plan and checkpoints, reconcile's source pages
    mappings: Mappings
    readers: SinkReaders
    gc_deletes: str
    targets_ttl: float = TARGETS_TTL_SECONDS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    notify: Callable[[str], None] = lambda message: log(logging.INFO, message)

    def mapping(self, table: str) -> TableMapping:
        mapping = self.mappings.get(table)
        if mapping is None:
            raise ReindexError(f"{table!r} is not a mapped table (tables.json)")
        if not mapping.opensearch.enabled:
            raise ReindexError(f"{table} is not replicated to OpenSearch (opensearch.enabled is false)")
        return mapping

    def open_generation(self, mapping: TableMapping, state: IndexState) -> str:
        """The generation the copy fills: the one in progress, or a new one added to the write set."""
        alias = mapping.opensearch.index
        if state.searched is None:
            raise ReindexError(f"{alias} does not exist yet: the first write creates it (or run fanout backfill)")
        current = generation_number(alias, state.searched) if not state.concrete else 0
        newer = [i for i in state.others if (generation_number(alias, i) or 0) > (current or 0)]
        older = [i for i in state.others if i not in newer]
        if older:
            raise ReindexError(
                f"{alias} keeps {', '.join(older)} for rollback: run `fanout reindex {mapping.table} --drop-old` "
                "first (or --rollback)"
            )
        if newer:
            self.notify(f"{mapping.table}: continuing the reindex into {newer[-1]}")
            return newer[-1]
        numbers = [generation_number(alias, i) or 0 for i in self.client.indices.get(index=f"{alias}.g*")]
        if max(numbers, default=0) > (current or 0):  # created by a run killed before it joined the write set
            new = generation_name(alias, max(numbers))
        else:
            new = generation_name(alias, max([FIRST_GENERATION - 1, *(current or 0,), *numbers]) + 1)
            body = index_body(mapping, self.gc_deletes)
            body["settings"]["index"]["refresh_interval"] = "-1"  # filled in bulk; refreshed before it is verified
            self.client.indices.create(index=new, body=body)
        actions = [{"add": {"index": new, "alias": write_set(alias)}}]
        if state.concrete and write_set(alias) not in state.writes:  # the concrete index joins the write set
            actions.append({"add": {"index": alias, "alias": write_set(alias)}})
        self.client.indices.update_aliases(body={"actions": actions})
        self.notify(f"{mapping.table}: created {new}; live changes now go to {state.searched} and {new}")
        return new

    def settle(self, seconds: float) -> None:
        self.notify(f"waiting {seconds:.0f}s for every fetcher to read the new write set")
        self.sleep(seconds)

    def run(
        self,
        table: str,
        runners: Sequence[RunRange],
        *,
        batch_size: int = 500,
        rate: float | None = None,
        verify_attempts: int = DEFAULT_VERIFY_ATTEMPTS,
        progress: Callable[[int, BackfillProgress], None] | None = None,
        should_continue: Callable[[], bool] = lambda: True,
    ) -> ReindexResult:
        """Open (or continue), settle, copy, verify and swap. A ``drift`` result leaves the alias where it was;
        a ``copying`` one stopped because ``should_continue()`` said so (Lambda time): run again to resume."""
        started = self.clock()
        mapping = self.mapping(table)
        alias = mapping.opensearch.index
        state = read_state(self.client, alias)
        new = self.open_generation(mapping, state)
        result = ReindexResult(table, "copying", alias, state.searched, new)
        # Every fetcher writes `new` from here on: the copy may read the source.
        self.settle(settle_seconds(self.targets_ttl))
        job = BackfillJob(table, generation=new)
        copied = run_parallel_backfill(
            self.conn,
            mapping,
            job,
            runners,
            rate=rate,
            batch_size=batch_size,
            progress=progress,
            should_continue=should_continue,
        )
        result.copy = copied.as_dict()
        if copied.status == RUNNING:
            result.elapsed_s = self.clock() - started
            return result
        if copied.status != DONE:
            raise ReindexError(
                f"the copy into {new} stopped ({'; '.join(copied.errors.values()) or copied.status}); "
                f"run `fanout reindex {table}` again to resume it"
            )
        if not should_continue():  # the copy ended with the time: verify and swap in the next run, not half here
            result.elapsed_s = self.clock() - started
            return result
        self.client.indices.put_settings(index=new, body={"index": {"refresh_interval": None}})
        report = self.verify(mapping, new, verify_attempts)
        result.verify = report.as_dict()
        if not report.agrees:
            result.status = "drift"
            result.drift = drift_lines(report, new)
            result.elapsed_s = self.clock() - started
            return result
        self.swap(alias, read_state(self.client, alias), new)
        result.status = "swapped"
        result.elapsed_s = self.clock() - started
        self.notify(f"{table}: searches now use {new}; {state.searched} is kept for --rollback until --drop-old")
        return result

    def verify(self, mapping: TableMapping, index: str, attempts: int) -> ReconcileReport:
        """Reconcile ``index`` alone against the source, then look again at what differed, a settle apart.

        Under a steady stream of writes a full pass nearly always meets a row in flight (committed, its fetch a
        moment away), in both generations alike; such a row agrees when looked at again. So the keys a full pass
        found are checked again alone (:meth:`recheck`), up to ``attempts`` looks in all; a key that still
        differs is drift. Found too many to name (more than the report keeps), the whole pass is run again."""
        one = replace(
            mapping,
            opensearch=replace(mapping.opensearch, index=index),
            dynamodb=replace(mapping.dynamodb, enabled=False),
        )
        self.client.indices.refresh(index=index)
        report = reconcile(self.conn, Mappings({mapping.table: one}), self.readers, tables=[mapping.table])
        self.notify(f"{mapping.table}: verify {index}: {report.summary()}")
        for _ in range(max(1, attempts) - 1):
            if report.agrees:
                break
            keys = drifted_keys(report)
            self.sleep(settle_seconds(self.targets_ttl))
            self.client.indices.refresh(index=index)
            if keys is None:
                report = reconcile(self.conn, Mappings({mapping.table: one}), self.readers, tables=[mapping.table])
            else:
                report = self.recheck(one, keys)
            self.notify(f"{mapping.table}: verify {index} again: {report.summary()}")
        return report

    def recheck(self, mapping: TableMapping, keys: Sequence[Key]) -> ReconcileReport:
        """The source rows of ``keys`` compared with ``mapping``'s index; a key with no row (or, composed, no
        document) must have no document there."""
        report = ReconcileReport(mode="recheck", repair=False)
        rows: list[dict[str, Any]] = []
        for key in keys:
            sql, params = page_query(mapping, None, 1, bounds=KeyRange(key, key), select=selected_columns(mapping))
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                rows += [typed_row(cur, found, mapping) for found in cur.fetchall()]
        if mapping.composition is not None:
            rows = composed_page(self.conn, mapping, rows)
        compare_page(mapping, rows, self.readers, report)
        present = {tuple(row[c] for c in mapping.key_columns) for row in rows}
        gone = {key_change(mapping, key).document_id: key for key in keys if key not in present}
        tally = report.tally(mapping.table, OPENSEARCH)
        for doc_id in self.readers.documents(mapping, list(gone)):
            tally.add(ORPHAN, list(gone[doc_id]), f"in {mapping.opensearch.index} but not in the source")
        report.source_rows[mapping.table] = len(rows)
        return report

    def swap(self, alias: str, state: IndexState, new: str) -> None:
        """Point the alias at ``new`` in one call: searches see the old index or the new, never neither."""
        actions: list[dict[str, Any]] = [{"add": {"index": new, "alias": alias}}]
        if state.concrete:
            actions.append({"remove_index": {"index": alias}})
        elif state.searched is not None and state.searched != new:
            actions.insert(0, {"remove": {"index": state.searched, "alias": alias}})
        self.client.indices.update_aliases(body={"actions": actions})

    def rollback(self, table: str) -> ReindexResult:
        """The alias back to the other generation of the write set (kept current since the swap)."""
        mapping = self.mapping(table)
        alias = mapping.opensearch.index
        state = read_state(self.client, alias)
        if state.concrete or len(state.others) != 1:
            raise ReindexError(f"{alias} has no other generation to roll back to (write set: {list(state.writes)})")
        (back,) = state.others
        self.swap(alias, state, back)
        self.notify(f"{table}: searches use {back} again; {state.searched} is still written (--drop-old drops it)")
        return ReindexResult(table, "rolled-back", alias, state.searched, back)

    def drop_old(self, table: str) -> ReindexResult:
        """Take every generation searches do not use out of the write set, wait for the fetchers, delete them."""
        mapping = self.mapping(table)
        alias = mapping.opensearch.index
        state = read_state(self.client, alias)
        current = generation_number(alias, state.searched or "") or 0
        existing = self.client.indices.get(index=f"{alias}.g*") if not state.concrete else {}
        # an older generation already out of the write set: a drop interrupted before its delete
        unwritten = [i for i in existing if i not in state.writes and (generation_number(alias, i) or 0) < current]
        if state.concrete or not (state.others or unwritten):
            raise ReindexError(f"{alias} has no old generation to drop (write set: {list(state.writes)})")
        if state.others:
            actions = [{"remove": {"index": index, "alias": write_set(alias)}} for index in state.others]
            self.client.indices.update_aliases(body={"actions": actions})
        self.settle(settle_seconds(self.targets_ttl) + REQUEST_BOUND_SECONDS)
        dropped = [*state.others, *unwritten]
        for index in dropped:
            self.client.indices.delete(index=index)
        self.notify(f"{table}: dropped {', '.join(dropped)}")
        return ReindexResult(table, "dropped", alias, state.searched, state.searched, dropped=dropped)


def drifted_keys(report: ReconcileReport) -> list[Key] | None:
    """Every key the report found differing, or None when it found more than it keeps examples of (or an
    entry whose id is no key)."""
    keys: list[Key] = []
    for sinks in report.tables.values():
        for tally in sinks.values():
            for kind in KINDS:
                examples = tally.examples.get(kind, [])
                if getattr(tally, kind) > len(examples) or any(e["key"] is None for e in examples):
                    return None
                keys += [tuple(example["key"]) for example in examples]
    return list(dict.fromkeys(keys))


def drift_lines(report: ReconcileReport, index: str) -> list[str]:
    """What keeps the swap from happening, one line per kind, with a few keys."""
    lines: list[str] = []
    for table, sinks in report.tables.items():
        for tally in sinks.values():
            for kind in ("missing", "stale", "orphan", "refused", "unchecked"):
                count = getattr(tally, kind)
                if count:
                    keys = [example["key"] for example in tally.examples.get(kind, [])[:5]]
                    lines.append(f"{table} in {index}: {count} {kind} (e.g. keys {keys})")
    return lines
