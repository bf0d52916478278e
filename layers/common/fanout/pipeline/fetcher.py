"""Fetcher logic: re-read each changed row under a lock and write it to every sink.

Every change in the event is tried against every enabled sink before failures
are raised, and all writes are version-gated, so retrying the whole event after
a partial failure is safe: what was already applied is applied again as a no-op
or found stale. Nothing here assumes it is the only writer of a row: several
fetchers, retries and a backfill may write the same key at once; the versions
decide which state stays.

Bounded by the time left (``deadline``, :mod:`fanout.deadline`): a read or a sink's
write starts only while twice the slowest step so far fits; the keys a step could not
start for are failed as "out of time" (the fetch queue retries just their messages),
so a fetcher is never killed between two sinks' writes and every change reaches every
sink or is retried.

A row a sink can never take (RowRejected: too large, unrepresentable) is not
retried: it is recorded in the dead-letter queue with the reason and the
change (replayable once the mapping is fixed), and the other sinks are still
written.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from fanout.deadline import NO_DEADLINE, Pace, TimeLeft
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping
from fanout.model.payloads import fetcher_event
from fanout.observability import ChangeMetric, log, log_enabled, record, record_values, traced
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.pipeline.rejects import Reject
from fanout.pipeline.related import PAGES_PER_INVOCATION, FanOut, apply_related, split_related
from fanout.pipeline.stage_times import StageTimes
from fanout.redaction import describe_error
from fanout.sinks import Outcome, RowRejected, Sink
from fanout.source.composition_read import ROOTS_PER_PAGE
from fanout.source.reader import RowSource
from fanout.source.rows import RowState

SOURCE = "source"  # the "sink" dimension of a failed re-read
MIN_STEP_SECONDS = 1.0  # a read or a sink write starts only with at least this long left (fanout.deadline.Pace)
OUT_OF_TIME = "out of time before this step; retried"


class FetchFailed(RuntimeError):
    """Some changes could not be applied; raising makes Lambda retry the event.

    ``report`` says which keys failed (``failed_keys``): the fetch queue retries only their messages."""

    def __init__(self, message: str, report: FetchReport | None = None) -> None:
        super().__init__(message)
        self.report = report if report is not None else FetchReport()


@dataclass
class FetchReport:
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    failures: list[str] = field(default_factory=list)
    failed_keys: set[tuple[str, tuple[tuple[str, Any], ...]]] = field(default_factory=set)  # (table, key)
    deferred_keys: set[tuple[str, tuple[tuple[str, Any], ...]]] = field(default_factory=set)  # out of time only
    summary: BatchSummary = field(default_factory=lambda: BatchSummary())

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.outcomes, "rejected": self.rejected, "failures": self.failures}

    def fail(self, change: Change, reason: str) -> None:
        """The change is not applied: it is retried (only its message of the batch)."""
        self.failures.append(f"{change.table}/{change.document_id}: {reason}")
        self.failed_keys.add((change.table, change.key))


@dataclass
class BatchSummary:
    """What one call of :meth:`Fetcher.apply` did, logged as one INFO line (``changes applied``).

    Per-change lines are DEBUG: CloudWatch Logs bills every byte it ingests, and this line costs ~40 bytes a
    change where a line a change costs ~325, as the parser's does (bench/results/log_volume.md). It keeps what
    ``fanout status`` reads: per table and sink the counts and every lag (whole milliseconds, for its percentiles), the
    last applied change of each table, and every correlation id, so one Logs Insights filter still
    finds a change's batch.
    """

    changes: int = 0
    messages: int = 0  # the queue messages that carried them (0: not from the queue)
    per_sink: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # table -> sink -> counts
    last_applied: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> the last write
    correlation_ids: list[str] = field(default_factory=list)
    stages: StageTimes = field(default_factory=StageTimes)

    def count(self, table: str, sink: str, what: str) -> None:
        self._entry(table, sink)[what] += 1

    def add(self, table: str, sink: str, *, stale: int, lags_ms: Sequence[float]) -> None:
        """A batch's changes ``sink`` holds: ``stale`` found a newer version, one lag per applied change."""
        if stale or lags_ms:
            entry = self._entry(table, sink)
            entry["stale"] += stale
            entry["applied"] += len(lags_ms)
            entry["lag_ms"] += [round(lag) for lag in lags_ms]

    def _entry(self, table: str, sink: str) -> dict[str, Any]:
        return self.per_sink.setdefault(table, {}).setdefault(
            sink, {"applied": 0, "stale": 0, "failed": 0, "rejected": 0, "lag_ms": []}
        )

    def log(self) -> None:
        if not self.per_sink:
            return
        log(
            logging.INFO,
            "changes applied",
            changes=self.changes,
            **({"messages": self.messages} if self.messages else {}),
            tables=self.per_sink,
            last_applied=self.last_applied,
            correlation_ids=self.correlation_ids,
            **({"stages": self.stages.as_line()} if self.stages else {}),
        )


def _record_rejection(change: Change, sink: Sink, exc: RowRejected, reject: Reject | None, report: FetchReport) -> None:
    reason = f"{sink.name}: {describe_error(exc)}"
    record(ChangeMetric.REJECTED, change.table, sink.name)
    log(
        logging.ERROR,
        "row rejected by sink",
        correlation_id=change.correlation_id,
        sink=sink.name,
        table=change.table,
        key=change.document_id,
        reason=reason,
    )
    if reject is None:  # nowhere to record it: fail loudly rather than lose it
        report.fail(change, reason)
        return
    try:
        reject(reason, fetcher_event([change]), change.correlation_id)
    except Exception as record_error:  # noqa: BLE001 - not recorded: retried as a failure instead
        report.fail(change, f"{reason} (and recording it failed: {record_error})")


@dataclass
class _Pending:
    """One key to fetch: the change kept for it, and every change it stands for (coalesced)."""

    change: Change
    correlation_ids: list[str]

    @property
    def correlation_id(self) -> str:
        return self.change.correlation_id


def coalesce(changes: Sequence[Change]) -> dict[str, list[_Pending]]:
    """The changes grouped by table, one per key (in first-seen order).

    Two changes of one key are equivalent to the fetcher (it re-reads the row, whatever the change said),
    so one read and one write serve both; the earliest ``changed_at_us`` is kept (the lag is the oldest
    change's) and every correlation id is logged. Keys are compared exactly, not under a collation:
    ``'acme'`` and ``'ACME'`` are two keys (two documents).
    """
    by_table: dict[str, dict[tuple[Any, ...], _Pending]] = {}
    for change in changes:
        keys = by_table.setdefault(change.table, {})
        seen = keys.get(change.key)
        if seen is None:
            keys[change.key] = _Pending(change, [change.correlation_id])
            continue
        if change.correlation_id not in seen.correlation_ids:
            seen.correlation_ids.append(change.correlation_id)
        if change.changed_at_us < seen.change.changed_at_us:
            seen.change = replace(change, correlation_id=seen.change.correlation_id)
    return {table: list(keys.values()) for table, keys in by_table.items()}


def _read_all(
    source: RowSource, mapping: TableMapping, pending: list[_Pending], deadline: TimeLeft
) -> list[RowState | Exception]:
    changes = [p.change for p in pending]
    try:
        with traced("read_rows", table=mapping.table, correlation_id=pending[0].correlation_id):
            return list(source.read_rows(mapping, changes, deadline=deadline))
    except Exception as exc:  # noqa: BLE001 - every key of the table failed: each is reported
        return [exc] * len(changes)


Written = tuple[list[Outcome | Exception], int]  # a sink's outcome per row, and when it answered (epoch µs)


def _write_all(sink: Sink, mapping: TableMapping, items: list[tuple[Change, RowState]]) -> Written:
    try:
        outcomes: list[Outcome | Exception] = list(sink.apply_batch(mapping, items))
    except Exception as exc:  # noqa: BLE001 - the whole batch failed: each row is reported
        outcomes = [exc] * len(items)
    return outcomes, time.time_ns() // 1000


class Fetcher:
    """The fetch path: re-read each changed row and write it to every enabled sink, in batches.

    Built once from its collaborators (fanout.pipeline.wiring for the functions; tests pass fakes): the mapping,
    the source database (``source``: the locking batch read, and the pages of roots of a change via a relation),
    the sinks, the recorder of rows a sink can never take (``reject``: the dead-letter queue; without it such a
    row is a failure like any other) and the queue of continuations (``continuations``: the fetch queue; without
    it, maintenance and the CLI, every page of roots is rebuilt in one call). The fetcher's entry, backfill and
    reconcile's repair all call :meth:`apply`.
    """

    def __init__(
        self,
        mappings: Mappings,
        source: RowSource,
        sinks: Sequence[Sink],
        *,
        reject: Reject | None = None,
        continuations: ChangeQueue | None = None,
        pages: int = PAGES_PER_INVOCATION,
        page_size: int = ROOTS_PER_PAGE,
    ) -> None:
        self.mappings = mappings
        self.source = source
        self.sinks = list(sinks)
        self.reject = reject
        self.fan_out = FanOut(source, continuations, pages, page_size)
        # The sinks of a table are written side by side: one on the calling thread, the others on this pool,
        # made once per fetcher (an execution environment's), its threads started on first use.
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.sinks) - 1), thread_name_prefix="fanout-sink")

    def with_reject(self, reject: Reject | None) -> Fetcher:
        """The same fetch path, recording the rows a sink can never take with ``reject`` instead."""
        other = copy.copy(self)
        other.reject = reject
        return other

    def without_sink(self, name: str) -> Fetcher:
        """The same fetch path without the sink called ``name`` (a backfill leaves the event bus out unless asked)."""
        other = copy.copy(self)
        other.sinks = [sink for sink in self.sinks if sink.name != name]
        return other

    def apply(self, changes: Sequence[Change], deadline: TimeLeft = NO_DEADLINE, *, messages: int = 0) -> FetchReport:
        """Apply ``changes`` (any number; one is a batch of one) and report per key.

        Changes are grouped by table and coalesced per key; every key of a table is read in one locking query
        per chunk (fanout.source.reader.read_rows), and each sink takes the rows of a table together
        (``apply_batch``: OpenSearch ``_bulk``, DynamoDB TransactWriteItems). Failures are collected per key and
        raised together at the end (FetchFailed) after every key has been tried against every sink. A change
        via a composed document's relation is resolved to its roots a bounded number of pages per call, the
        rest handed on (fanout.pipeline.related). With a ``deadline`` (the fetcher's entry: the Lambda context's
        time left) a step starts only while it fits; the keys it could not start for fail as out of time.
        ``messages``: how many queue messages carried them (for the batch's log line).
        """
        report = FetchReport()
        pace = Pace(MIN_STEP_SECONDS)
        report.summary.changes = len(changes)
        report.summary.messages = messages
        report.summary.correlation_ids = list(dict.fromkeys(change.correlation_id for change in changes))
        try:
            roots, related = split_related(changes)
            self._apply_all(roots, report, deadline, pace)
            if related:
                apply_related(
                    related,
                    self.mappings,
                    self.fan_out,
                    lambda page: self._apply_all(page, report, deadline, pace),
                    report.failed_keys,
                    report.failures,
                    deadline=deadline,
                    pace=pace,
                )
        finally:
            report.summary.log()
        if report.failures:
            raise FetchFailed("; ".join(report.failures), report)
        return report

    def _apply_all(self, changes: Sequence[Change], report: FetchReport, deadline: TimeLeft, pace: Pace) -> None:
        for table, pending in coalesce(changes).items():
            mapping = self.mappings.get(table)
            assert mapping is not None, "changes are validated against the mapping"
            if not pace.allows(deadline):
                for item in pending:
                    _out_of_time(report, item, SOURCE)
                continue
            started = time.monotonic()
            states = _read_all(self.source, mapping, pending, deadline)
            pace.timed(started)
            readable: list[tuple[_Pending, RowState]] = []
            for item, state in zip(pending, states, strict=True):
                if isinstance(state, RowState):
                    readable.append((item, state))
                    continue
                _failed(report, item, SOURCE, "read failed", state)
            if not readable:
                continue
            sinks = [sink for sink in self.sinks if sink.enabled_for(mapping)]
            if sinks and not pace.allows(deadline):  # the table's writes did not start: retried whole (versions)
                for item, _ in readable:
                    _out_of_time(report, item, sinks[0].name)
                continue
            started = time.monotonic()
            written = self._write_side_by_side(sinks, mapping, [(item.change, state) for item, state in readable])
            pace.timed(started)
            acked: dict[int, dict[str, int]] = {}
            for sink, (outcomes, at_us) in zip(sinks, written, strict=True):
                tally = _Tally(table, sink.name)
                for (item, state), outcome in zip(readable, outcomes, strict=True):
                    if _report_outcome(report, tally, sink, item, state, outcome, self.reject, at_us):
                        acked.setdefault(id(item), {})[sink.name] = at_us
                tally.publish(report.summary)
            for item, _ in readable:
                held = acked.get(id(item), {})
                if held and len(held) == len(sinks):  # every sink holds it: its stage times count
                    report.summary.stages.add(item.change, held)

    def _write_side_by_side(
        self, sinks: list[Sink], mapping: TableMapping, items: list[tuple[Change, RowState]]
    ) -> list[Written]:
        """Every sink's outcomes for ``items``, the sinks written at once; returns when all have answered, so a
        change is reported (and its message acknowledged) only once every sink holds it or refused it."""
        if not sinks:
            return []
        with traced("sinks", table=mapping.table, correlation_id=items[0][0].correlation_id):
            others = [self._pool.submit(_write_all, sink, mapping, items) for sink in sinks[1:]]
            first = _write_all(sinks[0], mapping, items)
            return [first, *(future.result() for future in others)]


def _out_of_time(report: FetchReport, item: _Pending, where: str) -> None:
    """A step (``where``: the read or a sink's write) did not start for lack of time: the change is retried.
    Not a failure of the source or the sink: logged at INFO, no failure metric."""
    change = item.change
    if (change.table, change.key) not in report.failed_keys:
        report.fail(change, OUT_OF_TIME)
        report.deferred_keys.add((change.table, change.key))
        log(logging.INFO, "change deferred", correlation_id=item.correlation_id, table=change.table,
            key=change.document_id, step="read" if where == SOURCE else where, reason=OUT_OF_TIME)  # fmt: skip


def _failed(
    report: FetchReport, item: _Pending, where: str, message: str, error: Exception, tally: _Tally | None = None
) -> None:
    """A read (``where`` is the source) or a sink write failed: counted, logged, and the change retried.
    A sink's failure is counted in its ``tally`` (published with the batch's other values of that sink)."""
    change = item.change
    report.fail(change, f"{'read' if where == SOURCE else where} failed: {describe_error(error)}")
    report.summary.count(change.table, where, "failed")
    if tally is None:
        record(ChangeMetric.FAILED, change.table, where)
    else:
        tally.failed.append(1.0)
    sink = {} if where == SOURCE else {"sink": where}
    log(
        logging.ERROR,
        message,
        correlation_id=item.correlation_id,
        correlation_ids=item.correlation_ids,
        **sink,
        table=change.table,
        key=change.document_id,
        error=describe_error(error),
    )


@dataclass
class _Tally:
    """One sink's metric values for one table's batch, recorded together when the batch is written.

    The same values, in the same order, as a call of ``record`` per change: per change, ``ChangesFailed`` 1 or
    0 and, when the sink holds it, ``ChangesApplied`` 1 with its ``ReplicationLag`` or ``ChangesStaleSkipped``
    1. One call per metric and batch instead of three per change and sink (bench/results/fetcher_profile.txt).
    """

    table: str
    sink: str
    failed: list[float] = field(default_factory=list)
    stale: int = 0
    lags_ms: list[float] = field(default_factory=list)  # one per applied change
    last_applied: dict[str, Any] | None = None

    def publish(self, summary: BatchSummary) -> None:
        """Record the values, and add the counts and lags to the batch's log line."""
        record_values(ChangeMetric.FAILED, self.table, self.sink, self.failed)
        record_values(ChangeMetric.STALE_SKIPPED, self.table, self.sink, [1.0] * self.stale)
        record_values(ChangeMetric.APPLIED, self.table, self.sink, [1.0] * len(self.lags_ms))
        record_values(ChangeMetric.LAG, self.table, self.sink, self.lags_ms)
        summary.add(self.table, self.sink, stale=self.stale, lags_ms=self.lags_ms)
        if self.last_applied is not None:
            summary.last_applied[self.table] = self.last_applied


def _report_outcome(
    report: FetchReport,
    tally: _Tally,
    sink: Sink,
    item: _Pending,
    state: RowState,
    outcome: Outcome | Exception,
    reject: Reject | None,
    acked_us: int,
) -> bool:
    """Count and log one sink's outcome for a change; True if the sink holds it (applied, or already newer)."""
    change = item.change
    if isinstance(outcome, RowRejected):
        report.summary.count(change.table, sink.name, "rejected")
        _record_rejection(change, sink, outcome, reject, report)
        report.outcomes.append(_entry(change, sink, state, Outcome.REJECTED))
        return False
    if isinstance(outcome, Exception):
        _failed(report, item, sink.name, "sink write failed", outcome, tally)
        return False
    lag_ms = max(0.0, (acked_us - change.changed_at_us) / 1000)
    tally.failed.append(0.0)
    if outcome is Outcome.STALE:
        tally.stale += 1
    else:
        tally.lags_ms.append(lag_ms)
        tally.last_applied = {
            "sink": sink.name,
            "key": change.document_id,
            "version": state.version,
            "outcome": outcome.value,
            "correlation_id": item.correlation_id,
            "lag_ms": round(lag_ms, 1),
        }
    report.outcomes.append(_entry(change, sink, state, outcome))
    if log_enabled(logging.DEBUG):  # one INFO line per batch instead (BatchSummary): these fields only if wanted
        log(
            logging.DEBUG,
            "stale change skipped" if outcome is Outcome.STALE else "change applied",
            correlation_id=item.correlation_id,
            correlation_ids=item.correlation_ids,
            sink=sink.name,
            table=change.table,
            key=change.document_id,
            outcome=outcome.value,
            version=state.version,
            lag_ms=round(lag_ms, 1),
        )
    return True


def _entry(change: Change, sink: Sink, state: RowState, outcome: Outcome) -> dict[str, Any]:
    """One sink's outcome for a change, as the report lists it (``applied``)."""
    return {
        "table": change.table,
        "key": change.document_id,
        "sink": sink.name,
        "outcome": outcome.value,
        "version": state.version,
    }
