"""Parallel backfill: one table split into key ranges, each an ordinary backfill job worked at once.

A range is a :class:`~fanout.operations.backfill.BackfillJob` with its own bounds, so it has
its own checkpoint row and resumes on its own, through the same fetch path as
live changes (safe beside them, as one job is). The split is planned once and
kept in the checkpoint table under the whole job's id and the number of
workers (``<job id>:x<workers>``), so running the same command again finds the
same ranges and every range resumes after its own last page, however much
the table changed since.

The split points are the keys at equal row counts, found by one pass over the
primary key (``COUNT(*)``, then ``LIMIT 1 OFFSET n`` from each point to the
next: index-only reads, no lock). The first range keeps the job's first key;
each following one starts after the previous one's last key.

Workers are threads in the CLI (each with its own connections and sinks) and
concurrent invocations of the maintenance function in AWS (one per range,
each continuing itself until its range is done). The ``rate`` limit protecting
the source is the total: each of ``n`` workers takes ``rate / n``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from fanout.model.mapping import TableMapping
from fanout.observability import log
from fanout.operations.backfill import (
    CHECKPOINT_TABLE,
    DONE,
    RUNNING,
    BackfillError,
    BackfillJob,
    BackfillProgress,
    BackfillResult,
    Checkpoint,
    reset_checkpoint,
    save_checkpoint,
    start_checkpoint,
)
from fanout.source.keyset import Key, KeyRange, key_from_list

MAX_WORKERS = 32  # each worker holds two database connections (its key pages and its locking reads)

RunRange = Callable[..., BackfillResult]  # (job, **run_backfill options) -> result, on its own connections


@dataclass
class ParallelResult:
    job_id: str  # the plan's id
    table: str
    status: str  # "done", "running" (stopped early) or "failed" (a range failed: run again to resume)
    ranges: list[BackfillJob]
    results: list[BackfillResult | None]  # per range; None where it failed
    errors: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        done = [r for r in self.results if r is not None]
        elapsed = max((r.elapsed_s for r in done), default=0.0)
        this_run = sum(r.rows_this_run for r in done)
        return {
            "job_id": self.job_id,
            "table": self.table,
            "status": self.status,
            "workers": len(self.ranges),
            "rows_done": sum(r.rows_done for r in done),
            "rows_this_run": this_run,
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(this_run / elapsed, 1) if elapsed > 0 else 0.0,
            "ranges": [
                {**result.as_dict(), "range": job.definition()}
                if result is not None
                else {"job_id": job.job_id, "status": "failed", "error": self.errors.get(i), "range": job.definition()}
                for i, (job, result) in enumerate(zip(self.ranges, self.results, strict=True))
            ],
        }


def plan_id(job: BackfillJob, workers: int) -> str:
    return f"{job.job_id}:x{workers}"


def split_points(conn: Any, mapping: TableMapping, job: BackfillJob, parts: int) -> list[Key]:
    """Up to ``parts - 1`` keys that cut the job's key range (its filter aside) into equal row counts."""
    whole = BackfillJob(job.table, job.key_range)  # the filter would need the table's rows, not its index
    count_sql, params = whole.page_query(mapping, None, 2**62, select="COUNT(*)")
    with conn.cursor() as cur:
        cur.execute(count_sql.rsplit(" ORDER BY ", 1)[0], params)
        total = int(cur.fetchone()[0])
    step = total // parts
    points: list[Key] = []
    after: Key | None = None
    while step > 0 and len(points) < parts - 1:
        sql, params = whole.page_query(mapping, after, 1, offset=step - 1)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            found = cur.fetchone()
        if found is None:
            break
        after = tuple(found)
        points.append(after)
    return points


def ranges_between(job: BackfillJob, points: Sequence[Key]) -> list[BackfillJob]:
    bounds: list[KeyRange] = []
    start, after = job.key_range.start, job.key_range.after
    for point in points:
        bounds.append(KeyRange(start=start, end=point, after=after))
        start, after = None, point
    bounds.append(KeyRange(start=start, end=job.key_range.end, after=after))
    return [replace(job, key_range=bound) for bound in bounds]


def load_plan(conn: Any, mapping: TableMapping, job: BackfillJob, workers: int) -> list[BackfillJob] | None:
    """The ranges planned for this job and number of workers, if planned before."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT job_definition FROM {CHECKPOINT_TABLE} WHERE job_id = %s", (plan_id(job, workers),))  # noqa: S608
        found = cur.fetchone()
    if found is None:
        return None
    stored = json.loads(found[0])
    return [
        replace(
            job,
            key_range=KeyRange(
                start=key_from_list(mapping, r.get("start")),
                end=key_from_list(mapping, r.get("end")),
                after=key_from_list(mapping, r.get("after")),
            ),
        )
        for r in stored["ranges"]
    ]


def plan(conn: Any, mapping: TableMapping, job: BackfillJob, workers: int, restart: bool = False) -> list[BackfillJob]:
    """The job's ranges for ``workers`` workers: the stored plan, or a new one (stored before any range runs)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise BackfillError(f"workers must be between 1 and {MAX_WORKERS}, got {workers}")
    planned = load_plan(conn, mapping, job, workers)
    if planned is not None and restart:
        for range_job in planned:
            reset_checkpoint(conn, range_job.job_id)
        reset_checkpoint(conn, plan_id(job, workers))
        planned = None
    if planned is not None:
        return planned
    ranges = ranges_between(job, split_points(conn, mapping, job, workers))
    definition = {**job.definition(), "workers": workers, "ranges": [r.definition() for r in ranges]}
    start_checkpoint(conn, plan_id(job, workers), job.table, definition)  # a plan stored meanwhile wins, and is used
    stored = load_plan(conn, mapping, job, workers)
    assert stored is not None
    log(logging.INFO, "backfill planned", job=plan_id(job, workers), ranges=str([r.definition() for r in stored]))
    return stored


def run_parallel_backfill(
    conn: Any,
    mapping: TableMapping,
    job: BackfillJob,
    runners: Sequence[RunRange],
    *,
    rate: float | None = None,
    restart: bool = False,
    progress: Callable[[int, BackfillProgress], None] | None = None,
    **options: Any,
) -> ParallelResult:
    """Run (or resume) ``job`` as ``len(runners)`` ranges at once, one runner each (a runner owns its
    connections and sinks: ``Maintenance.backfill``). ``progress(range index, progress)`` is called from
    the workers' threads. ``options`` go to every range's run_backfill (batch_size, max_pages, ...)."""
    workers = len(runners)
    if rate is not None and rate <= 0:
        raise BackfillError(f"rate must be positive rows/s, got {rate}")
    ranges = plan(conn, mapping, job, workers, restart=restart)
    share = rate / len(ranges) if rate is not None else None
    results: list[BackfillResult | None] = [None] * len(ranges)
    errors: dict[int, str] = {}

    def work(index: int) -> None:
        report = (lambda p: progress(index, p)) if progress is not None else None
        try:
            results[index] = runners[index](ranges[index], rate=share, restart=restart, progress=report, **options)
        except Exception as exc:  # noqa: BLE001 - one range failing spares the others; run again to resume it
            errors[index] = f"{type(exc).__name__}: {exc}"
            log(logging.ERROR, "backfill range failed", job=ranges[index].job_id, error=errors[index])

    with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="backfill") as pool:
        list(pool.map(work, range(len(ranges))))
    if errors:
        status = "failed"
    elif all(r is not None and r.status == DONE for r in results):
        status = DONE
    else:
        status = RUNNING
    rows = sum(r.rows_done for r in results if r is not None)
    # The plan's row keeps no key of its own (its ranges do): the whole job's status and rows.
    save_checkpoint(conn, Checkpoint(plan_id(job, workers), None, rows, 0, DONE if status == DONE else RUNNING))
    return ParallelResult(plan_id(job, workers), job.table, status, ranges, results, errors)
