"""Backfill: copy existing rows of a mapped table to the sinks through the live fetch path.

Triggers only see changes made after they exist; a backfill replays the rest.
It walks the table in primary-key order with *keyset* pagination (never
OFFSET)::

    SELECT <key columns> FROM t WHERE (<key>) > (<last key>) [AND range] [AND (filter)]
    ORDER BY <key> LIMIT <batch>

That read is plain and non-locking (one autocommit statement: no transaction
is held between pages). Each page's keys become :class:`~fanout.model.change.Change`
objects handed to :func:`fanout.pipeline.fetcher.apply_changes` — the very code live
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fanout.model.change import Change, ChangeValidationError, KeyValue, parse_change_message
from fanout.model.mapping import Mappings, TableMapping
from fanout.observability import log
from fanout.pipeline.fetcher import ReadRow, ReadRows, apply_changes
from fanout.pipeline.rejects import Reject
from fanout.sinks import Sink
from fanout.source.reader import _quote

CHECKPOINT_TABLE = "fanout_backfill_checkpoint"
DEFAULT_BATCH_SIZE = 500
RUNNING, DONE = "running", "done"

Key = tuple[KeyValue, ...]


class BackfillError(RuntimeError):
    """The backfill cannot run as asked (unknown table, bad key range, no checkpoint table)."""


@dataclass(frozen=True)
class KeyRange:
    """Optional bounds on the whole primary key (in key order): ``start`` and ``end`` inclusive, ``after``
    exclusive (instead of ``start``: the ranges of a parallel backfill begin after the previous one's end)."""

    start: Key | None = None
    end: Key | None = None
    after: Key | None = None


@dataclass(frozen=True)
class BackfillJob:
    table: str
    key_range: KeyRange = KeyRange()
    where: str | None = None
    where_params: tuple[Any, ...] = ()

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
        return definition

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


# --------------------------------------------------------------------------- SQL


def after_key_sql(columns: Sequence[str], strict: bool = True) -> str:
    """``(a, b) > (%s, %s)`` spelled out (``a > %s OR (a = %s AND b > %s)``), which every range
    optimizer uses; its parameters are :func:`after_key_params`."""
    clauses = []
    for i, column in enumerate(columns):
        last = i == len(columns) - 1
        op = (">" if strict else ">=") if last else ">"
        equal = [f"{_quote(c)} = %s" for c in columns[:i]]
        clauses.append("(" + " AND ".join([*equal, f"{_quote(column)} {op} %s"]) + ")")
    return "(" + " OR ".join(clauses) + ")"


def before_key_sql(columns: Sequence[str]) -> str:
    """``(a, b) <= (%s, %s)``, spelled out like :func:`after_key_sql`."""
    clauses = []
    for i, column in enumerate(columns):
        last = i == len(columns) - 1
        equal = [f"{_quote(c)} = %s" for c in columns[:i]]
        clauses.append("(" + " AND ".join([*equal, f"{_quote(column)} {'<=' if last else '<'} %s"]) + ")")
    return "(" + " OR ".join(clauses) + ")"


def key_bound_params(key: Key) -> list[Any]:
    params: list[Any] = []
    for i in range(len(key)):
        params.extend(key[: i + 1])
    return params


def page_query(
    mapping: TableMapping,
    job: BackfillJob,
    after: Key | None,
    limit: int,
    select: str | None = None,
    offset: int = 0,
) -> tuple[str, list[Any]]:
    """The keyset page query (no lock) and its parameters. Pages never use ``offset``; splitting a table
    into ranges does (fanout.operations.backfill_parallel)."""
    columns = mapping.key_columns
    where: list[str] = []
    params: list[Any] = []
    if after is not None:
        where.append(after_key_sql(columns))
        params += key_bound_params(after)
    elif job.key_range.after is not None:
        where.append(after_key_sql(columns))
        params += key_bound_params(job.key_range.after)
    elif job.key_range.start is not None:
        where.append(after_key_sql(columns, strict=False))
        params += key_bound_params(job.key_range.start)
    if job.key_range.end is not None:
        where.append(before_key_sql(columns))
        params += key_bound_params(job.key_range.end)
    if job.where:
        where.append(f"({job.where})")
        params += list(job.where_params)
    listed = select or ", ".join(_quote(c) for c in columns)
    sql = f"SELECT {listed} FROM {_quote(mapping.table)}"  # noqa: S608 - identifiers from the mapping
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + ", ".join(_quote(c) for c in columns) + f" LIMIT {int(limit)}"
    if offset:
        sql += f" OFFSET {int(offset)}"
    return sql, params


def estimated_rows(conn: Any, mapping: TableMapping) -> int | None:
    """InnoDB's row estimate (no scan): good enough for an ETA."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (mapping.table,),
        )
        found = cur.fetchone()
    return int(found[0]) if found and found[0] is not None else None


# --------------------------------------------------------------------------- checkpoint


def _key_from_json(mapping: TableMapping, text: str | None) -> Key | None:
    if text is None:
        return None
    return key_from_list(mapping, json.loads(text))


def key_from_list(mapping: TableMapping, values: list[Any] | None) -> Key | None:
    """A key stored as a JSON list, typed by the mapping's key columns."""
    if values is None:
        return None
    return tuple(int(v) if k.type == "int" else str(v) for k, v in zip(mapping.primary_key, values, strict=True))


def load_checkpoint(conn: Any, mapping: TableMapping, job_id: str) -> Checkpoint | None:
    import pymysql

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


def _start_checkpoint(conn: Any, job: BackfillJob) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT IGNORE INTO {CHECKPOINT_TABLE} (job_id, source_table, job_definition) VALUES (%s, %s, %s)",  # noqa: S608
            (job.job_id, job.table, json.dumps(job.definition())),
        )


def _save_checkpoint(conn: Any, checkpoint: Checkpoint) -> None:
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


def key_changes(
    mapping: TableMapping, mappings: Mappings, keys: Sequence[Key], correlation_id: str, reject: Reject | None
) -> tuple[list[Change], int]:
    """Changes for source keys, validated as the fetcher validates its input (a key no sink can take is
    recorded with ``reject``, not retried)."""
    now_us = int(time.time() * 1_000_000)
    changes: list[Change] = []
    rejected = 0
    for key in keys:
        message = {
            "v": 1,
            "action": "update",
            "table": mapping.table,
            "pk": dict(zip(mapping.key_columns, key, strict=True)),
            "ts_us": now_us,
            "correlation_id": correlation_id,
        }
        try:
            changes.append(parse_change_message(message, mappings))
        except ChangeValidationError as exc:
            rejected += 1
            log(logging.WARNING, "backfill key rejected", table=mapping.table, key=str(key), reason=str(exc))
            if reject is None:
                raise BackfillError(f"{mapping.table} key {key!r} cannot be replicated: {exc}") from exc
            reject(f"backfill: {exc}", message, correlation_id)
    return changes, rejected


def run_backfill(
    conn: Any,
    mappings: Mappings,
    job: BackfillJob,
    read_row: ReadRow,
    sinks: Sequence[Sink],
    reject: Reject | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rate: float | None = None,
    max_pages: int | None = None,
    should_continue: Callable[[], bool] = lambda: True,
    progress: Callable[[BackfillProgress], None] | None = None,
    restart: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    read_rows: ReadRows | None = None,
) -> BackfillResult:
    """Run (or resume) one backfill job until the table is done, ``max_pages`` pages were copied in this
    run, or ``should_continue()`` says stop (Lambda time). ``conn`` is an autocommit connection for the
    key pages and the checkpoint; ``read_row`` (and, given, ``read_rows``: one locking query per page)
    does the fetch path's locking reads."""
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
    _start_checkpoint(conn, job)
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
        sql, params = page_query(mapping, job, checkpoint.last_key, batch_size)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            keys: list[Key] = [tuple(row) for row in cur.fetchall()]
        if not keys:
            checkpoint.status = DONE
            _save_checkpoint(conn, checkpoint)
            break
        changes, rejected = key_changes(mapping, mappings, keys, correlation_id, reject)
        # FetchFailed: not checkpointed
        report = apply_changes(changes, mappings, read_row, sinks, reject, read_rows=read_rows)
        for outcome in report.outcomes:
            name = f"{outcome['sink']}:{outcome['outcome']}"
            result.outcomes[name] = result.outcomes.get(name, 0) + 1
        result.rejected_keys += rejected
        checkpoint.last_key = keys[-1]
        checkpoint.rows_done += len(keys)
        checkpoint.pages_done += 1
        if len(keys) < batch_size:
            checkpoint.status = DONE  # a short page is the last one
        _save_checkpoint(conn, checkpoint)
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
