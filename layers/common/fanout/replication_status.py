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
- **Dead letters**: the queue itself (depth from its attributes; per table by
  reading the messages, see ``fanout.dead_letters``).

Counts are of log lines in the window: a change Lambda retried three times
counts three failed attempts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .dead_letters import DeadLetter, QueueDepth

APPLIED = "change applied"
STALE = "stale change skipped"
SINK_FAILED = "sink write failed"
READ_FAILED = "read failed"
REJECTED = ("change rejected", "event rejected")
ACCEPTED = "change accepted"
MESSAGES = (APPLIED, STALE, SINK_FAILED, READ_FAILED, ACCEPTED, *REJECTED)
# Narrows the scan in CloudWatch Logs; the local stack ignores JSON patterns, so lines are checked here too.
FILTER_PATTERN = "{ " + " || ".join(f'$.message = "{m}"' for m in MESSAGES) + " }"
UNKNOWN_TABLE = "_unknown"


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
        if isinstance(fields, dict) and "_aws" not in fields and fields.get("message") in MESSAGES:
            yield LogLine(int(event.get("timestamp", 0)), fields)


def read_log_events(logs: Any, log_group: str, start_ms: int, end_ms: int, max_events: int) -> list[dict[str, Any]]:
    """``FilterLogEvents`` over the window, following ``nextToken`` up to ``max_events``; a missing group is empty."""
    events: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "logGroupName": log_group,
        "startTime": start_ms,
        "endTime": end_ms,
        "filterPattern": FILTER_PATTERN,
    }
    while len(events) < max_events:
        try:
            response = logs.filter_log_events(**request)
        except logs.exceptions.ResourceNotFoundException:
            return events  # nothing was logged yet
        events.extend(response.get("events", []))
        token = response.get("nextToken")
        if not token:
            break
        request["nextToken"] = token
    return events[:max_events]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what CloudWatch's pNN means for a set of samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


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
) -> dict[str, Any]:
    """The status report (``fanout status --json``): per table, and the dead-letter queue."""
    status = {t: TableStatus(t) for t in tables}

    def of(table: str) -> TableStatus:
        return status.setdefault(table, TableStatus(table))

    for line in sorted(lines, key=lambda line: line.timestamp_ms):
        entry = of(line.table)
        if line.message == ACCEPTED:
            entry.received += 1
        elif line.message in REJECTED:
            entry.rejected += 1
        elif line.message in (SINK_FAILED, READ_FAILED):
            entry.failed += 1
        elif line.message == STALE:
            entry.stale_skipped += 1
        elif line.message == APPLIED:
            entry.applied += 1
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
        "dead_letter_queue": {
            "depth": depth.total,
            "visible": depth.visible,
            "in_flight": depth.in_flight,
            "delayed": depth.delayed,
            "read": len(letters),
        },
        "tables": {name: entry.as_dict() for name, entry in sorted(status.items())},
    }
