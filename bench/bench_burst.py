"""Benchmark: a burst beyond capacity through the deployed local stack, and how it is worked off.

Eight sessions commit single-row INSERTs into ``posts`` at up to BENCH_BURST_RATE a second for
BENCH_BURST_SECONDS, then delete every row (tests/support/burst.py). The backlog (change-log rows +
fetch-queue messages, waiting and in flight) is sampled every second until it is empty. Reported, all from this one run:

- the backlog's peak, and the time from the last delete until the backlog was empty (time to drain);
- the capacity: the fastest the backlog shrank over any 10 s of the drain (the pipeline saturated);
- time to drain ÷ (peak ÷ capacity): 1.0 means the backlog was worked off at capacity the whole time; a stall
  or a collapse (killed functions, redelivered batches) shows as a larger ratio;
- functions killed at their timeout (ministack's log), new dead letters, and a full reconcile of ``posts``;
- the rings the triggers sent the parser while the burst was written: at most one per second of the clock
  since V010 (the ring token), where each statement rang a cold parser before.

    make down && make up                             # a cold stack: no parser warm when the burst starts
    .venv/bin/python -m bench.bench_burst            # -> bench/results/burst.{json,md}

ministack runs every function, the database and OpenSearch on this shared 2-core machine: the figures are
this stack's, read as ratios within the run, not AWS's throughput. Last run (bench/results/burst.md), on a cold
stack: 20 rings in 20.6 s of writing, drained in 154.5 s against 243.8 s of backlog ÷ capacity (0.63: the fetch
stage works while the burst is written, and a change inserted and deleted within one drained batch is fetched
once), 0 timeouts, 0 dead letters, reconcile clean.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import deployed_stack, write_results
from fanout.model.mapping import default_mappings
from fanout.operations.reconcile import SinkReaders, reconcile
from tests.support.aws import aws_resource
from tests.support.burst import (
    Burst,
    Drain,
    applied_since,
    dead_letters,
    fetch_queue_url,
    log_offset,
    timeouts_since,
    watch_drain,
)
from tests.support.e2e import Stack

RATE = float(os.environ.get("BENCH_BURST_RATE", "1000"))
SECONDS = float(os.environ.get("BENCH_BURST_SECONDS", "10"))
SESSIONS = 8


def main() -> None:
    stack = Stack.connect(deployed_stack())
    queue_url = fetch_queue_url(stack)
    letters_before = dead_letters(stack)
    kills_from = log_offset()
    rings_before = len(stack.bridge.calls(stack.env.parser_function_arn))
    burst = Burst(SESSIONS, RATE, SECONDS)
    started = time.monotonic()
    keys = burst.insert_posts(stack)
    inserted = time.monotonic()
    burst.delete_posts(stack, keys)
    deleted = time.monotonic()
    rings = len(stack.bridge.calls(stack.env.parser_function_arn)) - rings_before
    drain = watch_drain(stack, queue_url, timeout=1800)
    readers = SinkReaders(stack.opensearch, aws_resource(stack.env.environ(), "dynamodb"), stack.env.dynamodb_table)
    report = reconcile(stack.db, default_mappings(), readers, tables=["posts"])
    result = {
        "sessions": SESSIONS,
        "rate_asked_per_s": RATE,
        "seconds": SECONDS,
        "changes": 2 * len(keys),
        "insert_rate_per_s": round(len(keys) / (inserted - started), 1),
        "delete_seconds": round(deleted - inserted, 1),
        "written_seconds": round(deleted - started, 1),
        "parser_rings": rings,
        "timeouts": len(timeouts_since(kills_from)),
        "new_dead_letters": dead_letters(stack) - letters_before,
        "reconcile": report.summary(),
        **figures(drain, applied_since(kills_from)),
    }
    markdown = render(result)
    write_results("burst", result, markdown)
    print(markdown)
    stack.close()


def figures(drain: Drain, applied: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The drain's figures: its peak and time, the capacity (the fetch stage's sustained rate, the slower one
    here; else the best 10 s of the whole backlog), and time to drain ÷ (peak ÷ capacity)."""
    capacity = drain.fetch_rate(applied) or drain.capacity()
    ideal = drain.peak / capacity if capacity else None
    return {
        "backlog_peak": drain.peak,
        "drain_seconds": round(drain.seconds, 1),
        "capacity_per_s": round(capacity, 1),
        "best_10s_rate_per_s": round(drain.capacity(), 1),
        "backlog_over_capacity_s": None if ideal is None else round(ideal, 1),
        "drain_over_ideal": None if ideal is None else round(drain.seconds / ideal, 2),
        "samples": [(round(t, 1), b.log_rows, b.queued, b.in_flight) for t, b in drain.samples],
    }


def render(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            "# Burst through the deployed local stack (bench/bench_burst.py)",
            "",
            f"{result['sessions']} sessions asked for {result['rate_asked_per_s']:g} single-row commits/s for "
            f"{result['seconds']:g} s, then deleted every row: {result['changes']} changes (inserts reached "
            f"{result['insert_rate_per_s']}/s on this machine; the triggers rang the parser {result['parser_rings']} "
            f"times in the {result['written_seconds']:g} s it took to write them, at most once a second by the ring "
            "token). Time to drain: from the last delete until the change log and the fetch queue were empty. "
            "Capacity: the fetch stage's sustained rate once the log was empty (the slower stage); the best 10 s "
            "of the whole backlog beside it.",
            "",
            "| backlog peak | time to drain | capacity | best 10 s | backlog ÷ capacity | drain ÷ that "
            "| timeouts | new dead letters |",
            "|---|---|---|---|---|---|---|---|",
            f"| {result['backlog_peak']} | {result['drain_seconds']} s | {result['capacity_per_s']}/s | "
            f"{result['best_10s_rate_per_s']}/s | {result['backlog_over_capacity_s']} s | {result['drain_over_ideal']} "
            f"| {result['timeouts']} | {result['new_dead_letters']} |",
            "",
            "Reconcile after the drain:",
            "",
            *(f"    {line}" for line in str(result["reconcile"]).splitlines()),
        ]
    )


if __name__ == "__main__":
    main()
