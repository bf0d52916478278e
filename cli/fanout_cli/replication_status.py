"""How far behind is replication, and did anything end up in the dead-letter queue? (``fanout status``)

Where the answers come from, and why there:

- **Applied changes, lag and counts**: the functions' own log lines in CloudWatch
  Logs (``change accepted`` / ``change rejected`` from the parser; ``change
  applied`` / ``stale change skipped`` / ``sink write failed`` / ``read failed``
  / ``change rejected`` from the fetcher), read with ``FilterLogEvents`` over a
  recent window. Each applied line carries the table, sink, key, version,
  correlation id and ``lag_ms``: the same numbers as the EMF metrics, at the
  same moment. Logs work the same in AWS and on the local stack (ministack
  keeps function logs, but turns no EMF into metrics), which the metrics API
  would not; the dashboard is the place for long ranges.
- **Change events**: the batch line's counts for the ``eventbridge`` sink: its applied writes are events
  published, its failed and rejected ones events not published (retried, or dead-lettered).
- **Dead letters**: the queue itself (depth from its attributes; per table by
  reading the messages, see ``fanout_cli.dead_letters``).

Counts are of log lines in the window: a change Lambda retried three times
counts three failed attempts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fanout.pipeline.stage_times import percentile
from fanout_cli.dead_letters.queue import QueueDepth
from fanout_cli.dead_letters.records import DeadLetter

APPLIED = "change applied"
STALE = "stale change skipped"
SINK_FAILED = "sink write failed"
READ_FAILED = "read failed"
REJECTED = ("change rejected", "event rejected")
ACCEPTED = "change accepted"
BATCH = "changes applied"  # the fetcher's one INFO line per batch (fanout.pipeline.fetcher.BatchSummary)
# APPLIED and STALE are DEBUG lines now (or a sample of them); still read, from older deployments too.
MESSAGES = (BATCH, APPLIED, STALE, SINK_FAILED, READ_FAILED, ACCEPTED, *REJECTED)
# Narrows the scan in CloudWatch Logs; the local stack ignores JSON patterns, so lines are checked here too.
FILTER_PATTERN = "{ " + " || ".join(f'$.message = "{m}"' for m in MESSAGES) + " }"
UNKNOWN_TABLE = "_unknown"
_LAST = "last applied"  # the last write a batch line names (not a count)
_EVENTS_FAILED = "events failed"  # change events a batch line counts as not published (failed or dead-lettered)
EVENTS_SINK = "eventbridge"  # the sink whose applied writes are published change events (fanout.sinks.eventbridge)
_STAGES = "stage times"  # a batch line's per-stage times of its changes (fanout.pipeline.stage_times)


@dataclass(frozen=True)
class LogLine:
    timestamp_ms: int
    fields: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.fields.get("message", ""))

    @property
    def table(self) -> str:
        table = self.fields.get("table")
        return table if isinstance(table, str) and table else UNKNOWN_TABLE


def log_lines(events: Iterable[dict[str, Any]]) -> Iterator[LogLine]:
    """The JSON log lines among CloudWatch Logs events (START/END/REPORT and EMF blobs are skipped)."""
    for event in events:
        text = str(event.get("message", "")).strip()
        if not text.startswith("{"):
            continue
        try:
            fields = json.loads(text)
        except ValueError:
            continue
        if not isinstance(fields, dict) or "_aws" in fields or fields.get("message") not in MESSAGES:
            continue
        timestamp = int(event.get("timestamp", 0))
        if fields["message"] == BATCH:
            yield from _batch_lines(timestamp, fields)
        elif fields.get("level") != "DEBUG":  # a sampled invocation's per-change lines: its batch line counts
            yield LogLine(timestamp, fields)


def _batch_lines(timestamp_ms: int, fields: dict[str, Any]) -> Iterator[LogLine]:
    """A batch line as the per-change lines it stands for: one per applied write (with its lag) and stale skip.

    Failures and rejections have lines of their own (WARNING/ERROR, per change): not counted from here.
    """
    tables = fields.get("tables")
    last_applied = fields.get("last_applied")
    last_applied = last_applied if isinstance(last_applied, dict) else {}
    for table, sinks in tables.items() if isinstance(tables, dict) else ():
        if not isinstance(sinks, dict):
            continue
        for sink, counts in sinks.items():
            if not isinstance(counts, dict):
                continue
            lags = [lag for lag in counts.get("lag_ms") or [] if isinstance(lag, (int, float))]
            for lag in lags:
                yield LogLine(timestamp_ms, {"message": APPLIED, "table": table, "sink": sink, "lag_ms": lag})
            stale = counts.get("stale")
            for _ in range(stale if isinstance(stale, int) else 0):
                yield LogLine(timestamp_ms, {"message": STALE, "table": table, "sink": sink})
            if sink == EVENTS_SINK:  # events not published: retried by the queue, or dead-lettered
                failed = sum(n for n in (counts.get("failed"), counts.get("rejected")) if isinstance(n, int))
                for _ in range(failed):
                    yield LogLine(timestamp_ms, {"message": _EVENTS_FAILED, "table": table, "sink": sink})
        last = last_applied.get(table)
        if isinstance(last, dict):  # the batch's last write of the table: what "last applied" shows
            yield LogLine(timestamp_ms, {**last, "message": _LAST, "table": table})
    stages = fields.get("stages")
    if isinstance(stages, dict):
        yield LogLine(timestamp_ms, {"message": _STAGES, "stages": stages})


def _stage_values(stages: dict[str, Any], into: dict[str, list[float]]) -> None:
    """A batch line's stage times (each stage's ``ms`` list), added to ``into`` (stage -> values)."""
    for stage, entry in stages.items():
        values = entry.get("ms") if isinstance(entry, dict) else None
        if isinstance(values, list):
            kept = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            into.setdefault(str(stage), []).extend(kept)


# The most events one FilterLogEvents answer holds (AWS pages on with nextToken; the local stack's
# CloudWatch stops there without one): an answer this full may have been cut, so its slice is halved.
PAGE_EVENTS = 10_000
FIRST_SLICE_MS = 60_000


@dataclass(frozen=True)
class LogWindow:
    """The log events read for a window, newest first, and how far back they are complete."""

    events: list[dict[str, Any]]
    truncated: bool  # the cap was reached: events older than ``complete_from_ms`` were not read
    complete_from_ms: int


def _read_slice(logs: Any, request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every event of one time slice (following nextToken), in time order; None if the group does not exist."""
    events: list[dict[str, Any]] = []
    request = dict(request)
    while True:
        try:
            response = logs.filter_log_events(**request)
        except logs.exceptions.ResourceNotFoundException:
            return None  # nothing was logged yet
        page = response.get("events", [])
        events.extend(page)
        token = response.get("nextToken")
        if not token:
            return events
        request["nextToken"] = token


def read_log_events(logs: Any, log_group: str, start_ms: int, end_ms: int, max_events: int) -> LogWindow:
    """``FilterLogEvents`` over the window, newest events first, up to ``max_events``.

    FilterLogEvents answers oldest first, so reading a busy window from its start and stopping at a cap
    kept the oldest events and dropped the newest (a stale "last applied", undercounts, no warning). The
    window is read in time slices from its end backwards instead; a slice whose answer is full is halved
    (the local stack cuts an answer at 10,000 events without a next token). When the cap is reached the
    window says so, and from when on it is complete.
    """
    base = {"logGroupName": log_group, "filterPattern": FILTER_PATTERN}
    newest_first: list[list[dict[str, Any]]] = []
    kept = 0
    end = end_ms  # inclusive, like FilterLogEvents' endTime
    slice_ms = FIRST_SLICE_MS
    while end >= start_ms:
        begin = max(start_ms, end - slice_ms + 1)
        chunk = _read_slice(logs, {**base, "startTime": begin, "endTime": end, "limit": PAGE_EVENTS})
        if chunk is None:
            break
        if len(chunk) >= PAGE_EVENTS and end > begin:  # possibly cut: read it in halves, newest first
            slice_ms = max(1, (end - begin + 1) // 2)
            continue
        room = max_events - kept
        if len(chunk) > room:  # the cap: keep the newest, say from when on the window is complete
            newest = chunk[len(chunk) - room :] if room > 0 else []
            newest_first.append(newest)
            complete_from = int(newest[0].get("timestamp", end)) if newest else end + 1
            return LogWindow([e for c in reversed(newest_first) for e in c], True, complete_from)
        newest_first.append(chunk)
        kept += len(chunk)
        if len(chunk) >= PAGE_EVENTS:  # a full answer for one millisecond: cut, and it cannot be halved
            return LogWindow([e for c in reversed(newest_first) for e in c], True, end + 1)
        end = begin - 1
        if len(chunk) < PAGE_EVENTS // 4:
            slice_ms *= 2
    return LogWindow([e for c in reversed(newest_first) for e in c], False, start_ms)


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms / 1000)) + f".{epoch_ms % 1000:03d}Z"


@dataclass
class TableStatus:
    table: str
    received: int = 0
    applied: int = 0
    stale_skipped: int = 0
    failed: int = 0
    rejected: int = 0
    dead_letters: int = 0
    events_published: int = 0
    events_failed: int = 0
    last_applied: LogLine | None = None
    lags: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # sink -> [(time, lag_ms)]

    def as_dict(self) -> dict[str, Any]:
        last = None
        if self.last_applied is not None:
            f = self.last_applied.fields
            last = {
                "at": _iso(self.last_applied.timestamp_ms),
                "sink": f.get("sink"),
                "key": f.get("key"),
                "version": f.get("version"),
                "outcome": f.get("outcome"),
                "correlation_id": f.get("correlation_id"),
                "lag_ms": f.get("lag_ms"),
            }
        lag = {}
        for sink, samples in sorted(self.lags.items()):
            values = [v for _, v in samples]
            lag[sink] = {
                "last": max(samples)[1],
                "p50": percentile(values, 50),
                "p99": percentile(values, 99),
                "max": max(values),
                "samples": len(values),
            }
        return {
            "last_applied": last,
            "lag_ms": lag,
            "counts": {
                "received": self.received,
                "applied": self.applied,
                "stale_skipped": self.stale_skipped,
                "failed": self.failed,
                "rejected": self.rejected,
            },
            "events": {"published": self.events_published, "failed": self.events_failed},
            "dead_letters": self.dead_letters,
        }


def summarize(
    lines: Iterable[LogLine],
    dead_letters: Iterable[DeadLetter],
    depth: QueueDepth,
    tables: Iterable[str],
    *,
    window_seconds: float,
    now_ms: int,
    windows: dict[str, LogWindow] | None = None,
) -> dict[str, Any]:
    """The status report (``fanout status --json``): per table, and the dead-letter queue.

    ``windows`` (per function) say whether its log was read whole; a truncated one is reported with the
    time from which its counts are complete."""
    status = {t: TableStatus(t) for t in tables}

    def of(table: str) -> TableStatus:
        return status.setdefault(table, TableStatus(table))

    stages: dict[str, list[float]] = {}
    for line in sorted(lines, key=lambda line: line.timestamp_ms):
        if line.message == _STAGES:
            _stage_values(line.fields["stages"], stages)
            continue
        entry = of(line.table)
        if line.message == ACCEPTED:
            entry.received += 1
        elif line.message in REJECTED:
            entry.rejected += 1
        elif line.message in (SINK_FAILED, READ_FAILED):
            entry.failed += 1
        elif line.message == STALE:
            entry.stale_skipped += 1
        elif line.message == _LAST:
            entry.last_applied = line
        elif line.message == _EVENTS_FAILED:
            entry.events_failed += 1
        elif line.message == APPLIED:
            entry.applied += 1
            if line.fields.get("sink") == EVENTS_SINK:
                entry.events_published += 1
            if line.fields.get("key") is not None:  # a per-change line names its write
                entry.last_applied = line
            lag = line.fields.get("lag_ms")
            if isinstance(lag, (int, float)) and not isinstance(lag, bool):
                entry.lags.setdefault(str(line.fields.get("sink", "")), []).append((line.timestamp_ms, float(lag)))
    letters = list(dead_letters)
    for letter in letters:
        # A dead letter names whatever its payload said: only mapped tables get a line of their own.
        named = {table if table in status else UNKNOWN_TABLE for table in letter.tables} or {UNKNOWN_TABLE}
        for table in named:
            of(table).dead_letters += 1
    return {
        "generated_at": _iso(now_ms),
        "window_seconds": window_seconds,
        "truncated": {
            function: {"complete_from": _iso(window.complete_from_ms), "events_read": len(window.events)}
            for function, window in sorted((windows or {}).items())
            if window.truncated
        },
        "dead_letter_queue": {
            "depth": depth.total,
            "visible": depth.visible,
            "in_flight": depth.in_flight,
            "delayed": depth.delayed,
            "read": len(letters),
        },
        "tables": {name: entry.as_dict() for name, entry in sorted(status.items())},
        # where the lag comes from, over every table's applied changes (fanout.pipeline.stage_times)
        "stages_ms": {
            stage: {"p50": percentile(values, 50), "p99": percentile(values, 99), "samples": len(values)}
            for stage, values in stages.items()
            if values
        },
    }
