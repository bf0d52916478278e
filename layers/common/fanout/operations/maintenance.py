"""What backfill and reconcile need, built from the environment: the fetcher's own wiring (fanout.pipeline.wiring).

Used by the ``fanout backfill`` / ``fanout reconcile`` commands and by the
maintenance Lambda (maintenance_fn, whose events :func:`handle_event` takes). Two database connections: one
autocommit connection for the plain reads (key pages, checkpoints, reconcile's
source pages) and the fetch path's own, for its short locking reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fanout.model.mapping import Mappings
from fanout.observability import ChangeMetric, StackMetric, log, record, record_stack
from fanout.operations.backfill import BackfillJob, BackfillProgress, BackfillResult, KeyRange, run_backfill
from fanout.operations.backfill_parallel import plan
from fanout.operations.index_drift import index_drifts
from fanout.operations.reconcile import ReconcileReport, SinkReaders, reconcile
from fanout.operations.reindex import Reindex, ReindexError
from fanout.operations.schema_check import check_schema, read_live_schema
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.wiring import FetchPath
from fanout.sinks.opensearch import DEFAULT_GC_DELETES, OpenSearchSink
from fanout.source.connection import ConnectionHolder
from fanout.source.locks import current_schema

InvokeSelf = Callable[[dict[str, Any]], None]  # this function, invoked again asynchronously with an event
TimeLeft = Callable[[], bool]  # whether there is time for another page


class Maintenance:
    def __init__(self, source: str) -> None:
        self.fetch = FetchPath(source)
        self.mappings: Mappings = self.fetch.mappings
        self.database = ConnectionHolder.from_env()
        self.opensearch = self.fetch.opensearch
        self.readers = SinkReaders(self.fetch.opensearch, self.fetch.dynamodb, self.fetch.settings.dynamodb_table)

    def conn(self) -> Any:
        return self.database.get()

    def backfill(self, job: BackfillJob, *, events: bool = False, **options: Any) -> BackfillResult:
        """Run (or resume) ``job`` through this environment's fetch path; ``options`` as for ``run_backfill``.

        A backfill publishes no change events unless ``events`` (``fanout backfill --events``): a reload would
        flood the bus's consumers with every row again, at the same versions they already hold."""
        if events:
            self.fetch.require_events()
        fetcher = self.fetch.fetcher if events else self.fetch.without_events()
        return run_backfill(self.conn(), job, fetcher, **options)

    def copy(self, job: BackfillJob, **options: Any) -> BackfillResult:
        """A reindex's copy (``job.generation`` set): ``job`` through this environment's source and reject
        recorder into that one OpenSearch index; DynamoDB is not written."""
        mapping = self.mappings.get(job.table)
        if mapping is None or job.generation is None:
            raise BadEvent(f"a reindex copy needs a mapped table and a generation, got {job.table!r}")
        sink = OpenSearchSink(
            self.fetch.opensearch,
            max_request_bytes=self.fetch.settings.opensearch_max_request_bytes,
            pinned={mapping.opensearch.index: job.generation},
        )
        fetcher = Fetcher(self.mappings, self.fetch.fetcher.source, [sink], reject=self.fetch.reject)
        return run_backfill(self.conn(), job, fetcher, **options)

    def reindexer(self, **options: Any) -> Reindex:
        """The reindex of this environment's OpenSearch (``options`` as for :class:`Reindex`)."""
        return Reindex(self.opensearch, self.conn(), self.mappings, self.readers, DEFAULT_GC_DELETES, **options)

    def reconcile(self, **options: Any) -> ReconcileReport:
        """Compare source and sinks, repairs through this environment's fetch path; ``options`` as for
        ``fanout.operations.reconcile.reconcile``."""
        return reconcile(
            self.conn(),
            self.mappings,
            self.readers,
            fetcher=self.fetch.fetcher,
            **options,
        )

    def close(self) -> None:
        self.database.close()
        self.fetch.close()


class BadEvent(ValueError):
    """The event is not a maintenance request; the message names the field."""


def _key(event: dict[str, Any], name: str) -> tuple[Any, ...] | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadEvent(f"{name} must be a list of key values, got {value!r}")
    return tuple(value)


def _positive_int(event: dict[str, Any], name: str, default: int | None) -> int | None:
    value = event.get(name, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadEvent(f"{name} must be a positive integer, got {value!r}")
    return value


def _reconcile(deps: Maintenance, event: dict[str, Any]) -> dict[str, Any]:
    sample = _positive_int(event, "sample", None)
    report = deps.reconcile(tables=event.get("tables") or None, sample=sample, repair=bool(event.get("repair", False)))
    for table, sinks in report.tables.items():
        for sink, tally in sinks.items():
            # refused and unchecked rows are not repairable drift, but the sink does not agree with the source
            remaining = (tally.unrepaired if report.repair else tally.drift) + tally.refused + tally.unchecked
            record(ChangeMetric.DRIFT, table, sink, value=remaining)
    return report.as_dict()


def _check(deps: Maintenance) -> dict[str, Any]:
    """`fanout check` on the schedule: every drift logged (a warning each), their number as SchemaDrift."""
    conn = deps.conn()
    schema = current_schema(conn)
    if schema is None:
        raise BadEvent("the database connection names no schema (DB_NAME)")
    found = check_schema(deps.mappings, read_live_schema(conn, schema))
    found += index_drifts(deps.opensearch, deps.mappings)  # "run fanout reindex TABLE" where needed
    drifts = [drift.line() for drift in found]
    for line in drifts:
        log(logging.WARNING, "schema drift", drift=line)
    record_stack(StackMetric.SCHEMA_DRIFT, len(drifts))
    return {"drifts": drifts}


def _backfill(deps: Maintenance, event: dict[str, Any], invoke_self: InvokeSelf, time_left: TimeLeft) -> dict[str, Any]:
    table = event.get("table")
    if not isinstance(table, str):
        raise BadEvent(f"table must be a mapped table's name, got {table!r}")
    batch_size = _positive_int(event, "batch_size", 500)
    assert batch_size is not None
    job = BackfillJob(
        table,
        KeyRange(_key(event, "from"), _key(event, "to"), _key(event, "after")),
        event.get("where"),
        tuple(event.get("params") or ()),
    )
    workers = _positive_int(event, "workers", 1)
    if workers is not None and workers > 1:
        return _split(deps, event, job, workers, invoke_self)
    events = event.get("events", False)
    if not isinstance(events, bool):
        raise BadEvent(f"events must be true or false, got {events!r}")
    result = deps.backfill(
        job,
        events=events,
        batch_size=batch_size,
        rate=event.get("rate"),
        max_pages=_positive_int(event, "pages_per_invocation", None),
        should_continue=time_left,
    )
    if result.status != "done":  # continue in a fresh invocation, from the checkpoint
        continued = {k: v for k, v in event.items() if k != "restart"}
        invoke_self(continued)
    return result.as_dict()


def _split(
    deps: Maintenance, event: dict[str, Any], job: BackfillJob, workers: int, invoke_self: InvokeSelf
) -> dict[str, Any]:
    """Plan the ranges and start one invocation per range (each continues itself until its range is done)."""
    mapping = deps.mappings.get(job.table)
    if mapping is None:
        raise BadEvent(f"table must be a mapped table's name, got {job.table!r}")
    ranges = plan(deps.conn(), mapping, job, workers, restart=bool(event.get("restart", False)))
    rate = event.get("rate")
    started: list[dict[str, Any]] = []
    for part in ranges:
        bounds = part.key_range
        one = {k: v for k, v in event.items() if k not in ("workers", "from", "to", "after", "restart", "rate")}
        for name, key in (("from", bounds.start), ("to", bounds.end), ("after", bounds.after)):
            if key is not None:
                one[name] = list(key)
        if rate is not None:
            one["rate"] = rate / len(ranges)
        invoke_self(one)
        started.append({"job_id": part.job_id, **{k: one[k] for k in ("from", "to", "after") if k in one}})
    return {"status": "started", "table": job.table, "workers": len(ranges), "ranges": started}


class ProgressLog:
    """A reindex's copy in the function's log: rows done per range, at most one line every ``every`` seconds."""

    def __init__(self, table: str, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.table, self.every, self.clock = table, every, clock
        self.done: dict[int, int] = {}
        self.last = clock()

    def __call__(self, index: int, progress: BackfillProgress) -> None:
        self.done[index] = progress.rows_done
        if self.clock() - self.last >= self.every:
            self.last = self.clock()
            total = progress.estimated_total
            log(logging.INFO, "reindex progress", table=self.table, rows_done=sum(self.done.values()), estimated=total)


def _reindex(deps: Maintenance, event: dict[str, Any], invoke_self: InvokeSelf, time_left: TimeLeft) -> dict[str, Any]:
    """``fanout reindex`` in the function: the copy runs until little time is left, then this function is
    invoked again with the same event and resumes from the checkpoints (the same as the CLI's)."""
    table = event.get("table")
    if not isinstance(table, str):
        raise BadEvent(f"table must be a mapped table's name, got {table!r}")
    step = event.get("step", "run")
    if step not in ("run", "rollback", "drop-old"):
        raise BadEvent(f'step must be "run", "rollback" or "drop-old", got {step!r}')
    reindex = deps.reindexer()
    try:
        if step == "rollback":
            return reindex.rollback(table).as_dict()
        if step == "drop-old":
            return reindex.drop_old(table).as_dict()
        workers = _positive_int(event, "workers", 1) or 1
        others = [Maintenance(source="maintenance") for _ in range(workers - 1)]
        try:
            result = reindex.run(
                table,
                [deps.copy, *(other.copy for other in others)],
                batch_size=_positive_int(event, "batch_size", 500) or 500,
                rate=event.get("rate"),
                progress=ProgressLog(table),
                should_continue=time_left,
            )
        finally:
            for other in others:
                other.close()
    except ReindexError as exc:
        log(logging.ERROR, "reindex stopped", table=table, error=str(exc))
        return {"table": table, "status": "failed", "error": str(exc)}
    if result.status == "copying":
        invoke_self(event)
    log(
        logging.INFO if result.clean else logging.WARNING, "reindex", **{k: str(v) for k, v in result.as_dict().items()}
    )
    return result.as_dict()


ACTIONS = ("reconcile", "backfill", "check", "reindex")


def handle_event(
    event: Any, dependencies: Callable[[], Maintenance], invoke_self: InvokeSelf, time_left: TimeLeft
) -> dict[str, Any]:
    """The maintenance function's event (maintenance_fn/app.py lists the forms); ``invoke_self`` starts this
    function again asynchronously with an event, ``time_left`` says whether to take another page."""
    if not isinstance(event, dict) or event.get("action") not in ACTIONS:
        raise BadEvent('event must be an object with "action": "reconcile", "backfill", "check" or "reindex"')
    deps = dependencies()
    if event["action"] == "reconcile":
        return _reconcile(deps, event)
    if event["action"] == "check":
        return _check(deps)
    if event["action"] == "reindex":
        return _reindex(deps, event, invoke_self, time_left)
    return _backfill(deps, event, invoke_self, time_left)
