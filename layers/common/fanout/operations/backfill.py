"""Backfill: copy existing rows of a mapped table to the sinks through the live fetch path.

Triggers only see changes made after they exist; a backfill replays the rest.
It walks the table in primary-key order with keyset pages (:mod:`fanout.source.keyset`,
never OFFSET), within the job's key range and filter.

Each page read is plain and non-locking (one autocommit statement: no transaction
is held between pages). Each page's keys become :class:`~fanout.model.change.Change`
objects handed to :meth:`fanout.pipeline.fetcher.Fetcher.apply` — the very code live
changes go through: each row is re-read under its own short locking read, with
the database clock as its version, and written version-gated. So a backfill is
safe beside live changes: whichever state was read later wins in every sink.

After every page the last key is saved in ``fanout_backfill_checkpoint`` (one
row per job, created by migration V005: the migrations own the schema). A
backfill that crashes, is killed or runs out of Lambda time resumes after the
last *completed* page: at most one page is fetched twice, which is harmless
(the writes are idempotent). A page whose fetch failed is not checkpointed.

The load on the source is bounded by the page size (the key read) and by
``rate`` (rows per second, a pause after each page when ahead of it).

A ``where`` filter is SQL text from the operator (trusted input, like the
mapping: never from a payload), wrapped in parentheses; its values should be
given as ``where_params`` (``%s`` placeholders), not spliced into the text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from fanout.model.mapping import TableMapping
from fanout.observability import log
from fanout.pipeline.fetcher import Fetcher
from fanout.source.keyset import (
    Key,
    UnreplicableKey,
    estimated_rows,
    key_changes,
    key_from_list,
    page_query,
)
from fanout.source.keyset import KeyRange as KeyRange  # part of a job's definition: callers name it with the job

CHECKPOINT_TABLE = "fanout_backfill_checkpoint"
DEFAULT_BATCH_SIZE = 500
RUNNING, DONE = "running", "done"


class BackfillError(RuntimeError):
    """The backfill cannot run as asked (unknown table, bad key range, no checkpoint table)."""


@dataclass(frozen=True)
class BackfillJob:
    table: str
    key_range: KeyRange = KeyRange()
    where: str | None = None
    where_params: tuple[Any, ...] = ()
    generation: str | None = None  # a reindex's copy: the one OpenSearch index it writes (fanout.operations.reindex)

    def definition(self) -> dict[str, Any]:
        definition = {
            "table": self.table,
            "start": list(self.key_range.start) if self.key_range.start is not None else None,
            "end": list(self.key_range.end) if self.key_range.end is not None else None,
            "where": self.where,
            "where_params": [str(p) for p in self.where_params],
        }
        if self.key_range.after is not None:  # only when set: the ids of jobs without it stay as they were
            definition["after"] = list(self.key_range.after)
        if self.generation is not None:  # a reindex's copy is its own job, apart from a backfill of the table
            definition["generation"] = self.generation
        return definition

    def page_query(self, mapping: TableMapping, after: Key | None, limit: int, **options: Any) -> tuple[str, list[Any]]:
        """This job's keyset page after ``after``: :func:`fanout.source.keyset.page_query` with its range and filter."""
        bounds, where, params = self.key_range, self.where, self.where_params
        return page_query(mapping, after, limit, bounds=bounds, where=where, where_params=params, **options)

    @property
    def job_id(self) -> str:
        """The same table, range and filter give the same job: running the command again resumes it."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return f"{self.table}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass
class Checkpoint:
    job_id: str
    last_key: Key | None
    rows_done: int
    pages_done: int
    status: str


@dataclass
class BackfillProgress:
    table: str
    rows_done: int  # in this job, across runs
    rows_this_run: int
    pages_this_run: int
    elapsed_s: float
    estimated_total: int | None


@dataclass
class BackfillResult:
    job_id: str
    table: str
    status: str  # "done" or "running" (stopped early: run again, it resumes)
    rows_done: int
    rows_this_run: int
    pages_this_run: int
    resumed_from: Key | None
    last_key: Key | None
    elapsed_s: float
    rejected_keys: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows_this_run / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "table": self.table,
            "status": self.status,
            "rows_done": self.rows_done,
            "rows_this_run": self.rows_this_run,
            "pages_this_run": self.pages_this_run,
            "resumed_from": list(self.resumed_from) if self.resumed_from is not None else None,
            "last_key": list(self.last_key) if self.last_key is not None else None,
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.rate, 1),
            "rejected_keys": self.rejected_keys,
            "outcomes": self.outcomes,
        }


# --------------------------------------------------------------------------- checkpoint


def _key_from_json(mapping: TableMapping, text: str | None) -> Key | None:
    if text is None:
        return None
    return key_from_list(mapping, json.loads(text))


def load_checkpoint(conn: Any, mapping: TableMapping, job_id: str) -> Checkpoint | None:
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT last_key, rows_done, pages_done, job_status FROM {CHECKPOINT_TABLE} WHERE job_id = %s",  # noqa: S608
                (job_id,),
            )
            found = cur.fetchone()
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == 1146:  # ER_NO_SUCH_TABLE
            raise BackfillError(
                f"the checkpoint table {CHECKPOINT_TABLE} does not exist: apply the migrations first "
                "(fanout migrate, or deploy the stack)"
            ) from exc
        raise
    if found is None:
        return None
    return Checkpoint(job_id, _key_from_json(mapping, found[0]), int(found[1]), int(found[2]), str(found[3]))


def reset_checkpoint(conn: Any, job_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {CHECKPOINT_TABLE} WHERE job_id = %s", (job_id,))  # noqa: S608


def start_checkpoint(conn: Any, job_id: str, table: str, definition: dict[str, Any]) -> None:
    """The job's checkpoint row, unless it exists (then a run resumes from it)."""
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT IGNORE INTO {CHECKPOINT_TABLE} (job_id, source_table, job_definition) VALUES (%s, %s, %s)",  # noqa: S608
            (job_id, table, json.dumps(definition)),
        )


def save_checkpoint(conn: Any, checkpoint: Checkpoint) -> None:
    last = json.dumps(list(checkpoint.last_key)) if checkpoint.last_key is not None else None
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {CHECKPOINT_TABLE} SET last_key = %s, rows_done = %s, pages_done = %s, job_status = %s, "  # noqa: S608
            "updated_at = CURRENT_TIMESTAMP(6), "
            "finished_at = IF(%s = 'done', CURRENT_TIMESTAMP(6), NULL) WHERE job_id = %s",
            (
                last,
                checkpoint.rows_done,
                checkpoint.pages_done,
                checkpoint.status,
                checkpoint.status,
                checkpoint.job_id,
            ),
        )


# --------------------------------------------------------------------------- the run


def run_backfill(
    conn: Any,
    job: BackfillJob,
    fetcher: Fetcher,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rate: float | None = None,
    max_pages: int | None = None,
    should_continue: Callable[[], bool] = lambda: True,
    progress: Callable[[BackfillProgress], None] | None = None,
    restart: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillResult:
    """Run (or resume) one backfill job until the table is done, ``max_pages`` pages were copied in this
    run, or ``should_continue()`` says stop (Lambda time). ``conn`` is an autocommit connection for the
    key pages and the checkpoint; each page goes through ``fetcher`` (one locking read per page, the sinks,
    its reject recorder)."""
    mappings, reject = fetcher.mappings, fetcher.reject
    mapping = mappings.get(job.table)
    if mapping is None:
        raise BackfillError(f"{job.table!r} is not a mapped table (tables.json)")
    if batch_size < 1:
        raise BackfillError(f"batch size must be at least 1, got {batch_size}")
    if rate is not None and rate <= 0:
        raise BackfillError(f"rate must be positive rows/s, got {rate}")
    if job.key_range.start is not None and job.key_range.after is not None:
        raise BackfillError("a key range has a first key or a key it starts after, not both")
    bounds = (("start", job.key_range.start), ("end", job.key_range.end), ("after", job.key_range.after))
    for name, bound in bounds:
        if bound is not None and len(bound) != len(mapping.key_columns):
            raise BackfillError(f"key range {name} {list(bound)} must give all key columns {list(mapping.key_columns)}")
    if restart:
        reset_checkpoint(conn, job.job_id)
    start_checkpoint(conn, job.job_id, job.table, job.definition())
    checkpoint = load_checkpoint(conn, mapping, job.job_id)
    assert checkpoint is not None
    resumed_from = checkpoint.last_key
    started = clock()
    estimated = estimated_rows(conn, mapping) if progress else None
    result = BackfillResult(
        job.job_id, job.table, checkpoint.status, checkpoint.rows_done, 0, 0, resumed_from, None, 0.0
    )
    result.last_key = checkpoint.last_key
    correlation_id = f"backfill:{job.job_id}"
    log(logging.INFO, "backfill started", job=job.job_id, table=job.table, resumed_from=str(resumed_from))
    while checkpoint.status != DONE:
        if max_pages is not None and result.pages_this_run >= max_pages:
            break
        if not should_continue():
            break
        sql, params = job.page_query(mapping, checkpoint.last_key, batch_size)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            keys: list[Key] = [tuple(row) for row in cur.fetchall()]
        if not keys:
            checkpoint.status = DONE
            save_checkpoint(conn, checkpoint)
            break
        try:
            changes, rejected = key_changes(mapping, mappings, keys, correlation_id, reject)
        except UnreplicableKey as exc:  # no reject to record it with: the run stops, saying which key
            raise BackfillError(str(exc)) from exc
        # FetchFailed: not checkpointed
        report = fetcher.apply(changes)
        for outcome in report.outcomes:
            name = f"{outcome['sink']}:{outcome['outcome']}"
            result.outcomes[name] = result.outcomes.get(name, 0) + 1
        result.rejected_keys += rejected
        checkpoint.last_key = keys[-1]
        checkpoint.rows_done += len(keys)
        checkpoint.pages_done += 1
        if len(keys) < batch_size:
            checkpoint.status = DONE  # a short page is the last one
        save_checkpoint(conn, checkpoint)
        result.rows_this_run += len(keys)
        result.pages_this_run += 1
        elapsed = clock() - started
        if progress is not None:
            progress(
                BackfillProgress(
                    job.table, checkpoint.rows_done, result.rows_this_run, result.pages_this_run, elapsed, estimated
                )
            )
        if rate is not None and checkpoint.status != DONE:
            ahead = result.rows_this_run / rate - elapsed
            if ahead > 0:
                sleep(ahead)
    result.status = checkpoint.status
    result.rows_done = checkpoint.rows_done
    result.last_key = checkpoint.last_key
    result.elapsed_s = clock() - started
    log(logging.INFO, "backfill stopped", **{k: str(v) for k, v in result.as_dict().items()})
    return result
