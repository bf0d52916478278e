"""Fetcher logic: re-read each changed row under a lock and write it to every sink.

Every change in the event is tried against every enabled sink before failures
are raised, and all writes are version-gated, so retrying the whole event after
a partial failure is safe: what was already applied is applied again as a no-op
or found stale. Nothing here assumes it is the only writer of a row: several
fetchers, retries and a backfill may write the same key at once; the versions
decide which state stays.

A row a sink can never take (RowRejected: too large, unrepresentable) is not
retried: it is recorded in the dead-letter queue with the reason and the
change (replayable once the mapping is fixed), and the other sinks are still
written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .change import Change, ChangeValidationError, parse_change_message
from .mapping import Mappings, TableMapping
from .observability import UNKNOWN_TABLE, ChangeMetric, log, metric_table, record, traced
from .redaction import describe_error
from .sinks import Outcome, RowRejected, Sink
from .source_reader import RowState

ReadRow = Callable[[TableMapping, Change], RowState]
Reject = Callable[[str, Any, str], None]
SOURCE = "source"  # the "sink" dimension of a failed re-read


class FetchFailed(RuntimeError):
    """Some changes could not be applied; raising makes Lambda retry the event."""


@dataclass
class FetchReport:
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.outcomes, "rejected": self.rejected, "failures": self.failures}


def parse_fetcher_event(
    event: Any, mappings: Mappings, reject: Reject, correlation_id: str
) -> tuple[list[Change], int]:
    """Validate the fetcher's event; invalid change messages are recorded, not retried."""
    messages = event.get("changes") if isinstance(event, dict) else None
    if not isinstance(messages, list):
        reason = 'fetcher event must be an object with a "changes" list'
        log(logging.WARNING, "event rejected", correlation_id=correlation_id, reason=reason)
        reject(reason, event, correlation_id)
        record(ChangeMetric.REJECTED, UNKNOWN_TABLE)
        return [], 1
    changes: list[Change] = []
    rejected = 0
    for i, message in enumerate(messages):
        try:
            changes.append(parse_change_message(message, mappings))
        except ChangeValidationError as exc:
            rejected += 1
            log(
                logging.WARNING,
                "change rejected",
                correlation_id=correlation_id,
                table=metric_table(message, mappings),
                field=f"changes[{i}].{exc.log_field}",
                reason=exc.reason,
            )
            reject(f"changes[{i}].{exc}", message, correlation_id)
            record(ChangeMetric.REJECTED, metric_table(message, mappings))
    return changes, rejected


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
        report.failures.append(f"{change.table}/{change.document_id}: {reason}")
        return
    try:
        reject(reason, {"changes": [change.to_message()]}, change.correlation_id)
    except Exception as record_error:  # noqa: BLE001 - not recorded: retried as a failure instead
        where = f"{change.table}/{change.document_id}"
        report.failures.append(f"{where}: {reason} (and recording it failed: {record_error})")


def apply_changes(
    changes: Sequence[Change],
    mappings: Mappings,
    read_row: ReadRow,
    sinks: Sequence[Sink],
    reject: Reject | None = None,
) -> FetchReport:
    """Re-read each change's row and write it to every enabled sink.

    ``reject`` records rows a sink can never take (the dead-letter queue);
    without it such a row is a failure like any other.
    """
    report = FetchReport()
    for change in changes:
        mapping = mappings.get(change.table)
        assert mapping is not None, "changes are validated against the mapping"
        try:
            with traced("read_row", table=change.table, correlation_id=change.correlation_id):
                state = read_row(mapping, change)
        except Exception as exc:  # noqa: BLE001 - recorded and re-raised below as FetchFailed
            report.failures.append(f"{change.table}/{change.document_id}: read failed: {describe_error(exc)}")
            record(ChangeMetric.FAILED, change.table, SOURCE)
            log(
                logging.ERROR,
                "read failed",
                correlation_id=change.correlation_id,
                table=change.table,
                key=change.document_id,
                error=describe_error(exc),
            )
            continue
        for sink in sinks:
            if not sink.enabled_for(mapping):
                continue
            try:
                with traced(f"sink:{sink.name}", table=change.table, correlation_id=change.correlation_id):
                    outcome = sink.apply(mapping, change, state)
            except RowRejected as exc:
                _record_rejection(change, sink, exc, reject, report)
                outcome = Outcome.REJECTED
                report.outcomes.append(
                    {
                        "table": change.table,
                        "key": change.document_id,
                        "sink": sink.name,
                        "outcome": outcome.value,
                        "version": state.version,
                    }
                )
                continue
            except Exception as exc:  # noqa: BLE001 - one sink failing must not stop the others
                report.failures.append(
                    f"{change.table}/{change.document_id}: {sink.name} failed: {describe_error(exc)}"
                )
                record(ChangeMetric.FAILED, change.table, sink.name)
                log(
                    logging.ERROR,
                    "sink write failed",
                    correlation_id=change.correlation_id,
                    sink=sink.name,
                    table=change.table,
                    key=change.document_id,
                    error=describe_error(exc),
                )
                continue
            lag_ms = max(0.0, time.time() * 1000 - change.changed_at_us / 1000)
            record(ChangeMetric.FAILED, change.table, sink.name, value=0)
            if outcome is Outcome.STALE:
                record(ChangeMetric.STALE_SKIPPED, change.table, sink.name)
            else:
                record(ChangeMetric.APPLIED, change.table, sink.name)
                record(ChangeMetric.LAG, change.table, sink.name, value=lag_ms)
            report.outcomes.append(
                {
                    "table": change.table,
                    "key": change.document_id,
                    "sink": sink.name,
                    "outcome": outcome.value,
                    "version": state.version,
                }
            )
            log(
                logging.INFO,
                "stale change skipped" if outcome is Outcome.STALE else "change applied",
                correlation_id=change.correlation_id,
                sink=sink.name,
                table=change.table,
                key=change.document_id,
                outcome=outcome.value,
                version=state.version,
                lag_ms=round(lag_ms, 1),
            )
    if report.failures:
        raise FetchFailed("; ".join(report.failures))
    return report
