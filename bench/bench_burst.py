"""Benchmark: a burst beyond capacity through the deployed local stack, and how it is worked off.

Eight sessions commit single-row INSERTs into ``posts`` at up to BENCH_BURST_RATE a second for
BENCH_BURST_SECONDS, then delete every row (tests/support/burst.py, the same driver as
tests/e2e/test_burst_e2e.py). The backlog (change-log rows + fetch-queue messages, waiting and in flight) is
sampled every second until it is empty. Reported, all from this one run:

- the backlog's peak, and the time from the last delete until the backlog was empty (time to drain);
- the capacity: the fastest the backlog shrank over any 10 s of the drain (the pipeline saturated);
- time to drain ÷ (peak ÷ capacity): 1.0 means the backlog was worked off at capacity the whole time; a stall
  or a collapse (killed functions, redelivered batches) shows as a larger ratio;
- functions killed at their timeout (ministack's log), new dead letters, and a full reconcile of ``posts``.

    make up
    .venv/bin/python -m bench.bench_burst            # -> bench/results/burst.{json,md}

ministack runs every function, the database and OpenSearch on this shared 2-core machine: the figures are
this stack's, read as ratios within the run, not AWS's throughput.
"""

from __future__ import annotations

import os
import time

from bench.harness import deployed_stack, write_results
from fanout.model.mapping import default_mappings
from fanout.operations.reconcile import SinkReaders, reconcile
from tests.support.aws import aws_resource
from tests.support.burst import Burst, dead_letters, fetch_queue_url, log_offset, timeouts_since, watch_drain
from tests.support.e2e import Stack

RATE = float(os.environ.get("BENCH_BURST_RATE", "1000"))
SECONDS = float(os.environ.get("BENCH_BURST_SECONDS", "10"))
SESSIONS = 8


def main() -> None:
    stack = Stack.connect(deployed_stack())
    queue_url = fetch_queue_url(stack)
    letters_before = dead_letters(stack)
    kills_from = log_offset()
    burst = Burst(SESSIONS, RATE, SECONDS)
    started = time.monotonic()
    keys = burst.insert_posts(stack)
    inserted = time.monotonic()
    burst.delete_posts(stack, keys)
    deleted = time.monotonic()
    drain = watch_drain(stack, queue_url, timeout=1800)
    capacity = drain.capacity()
    readers = SinkReaders(stack.opensearch, aws_resource(stack.env.environ(), "dynamodb"), stack.env.dynamodb_table)
    report = reconcile(stack.db, default_mappings(), readers, tables=["posts"])
    ideal = drain.peak / capacity if capacity else None
    result = {
        "sessions": SESSIONS,
        "rate_asked_per_s": RATE,
        "seconds": SECONDS,
        "changes": 2 * len(keys),
        "insert_rate_per_s": round(len(keys) / (inserted - started), 1),
        "delete_seconds": round(deleted - inserted, 1),
        "backlog_peak": drain.peak,
        "drain_seconds": round(drain.seconds, 1),
        "capacity_per_s": round(capacity, 1),
        "backlog_over_capacity_s": None if ideal is None else round(ideal, 1),
        "drain_over_ideal": None if ideal is None else round(drain.seconds / ideal, 2),
        "timeouts": len(timeouts_since(kills_from)),
        "new_dead_letters": dead_letters(stack) - letters_before,
        "reconcile": report.summary(),
        "samples": [(round(t, 1), b.log_rows, b.queued, b.in_flight) for t, b in drain.samples],
    }
    markdown = "\n".join(
        [
            "# Burst through the deployed local stack (bench/bench_burst.py)",
            "",
            f"{SESSIONS} sessions asked for {RATE:g} single-row commits/s for {SECONDS:g} s, then deleted every row: "
            f"{result['changes']} changes (inserts reached {result['insert_rate_per_s']}/s on this machine).",
            "",
            "| backlog peak | time to drain | capacity | backlog ÷ capacity | drain ÷ ideal | timeouts "
            "| new dead letters |",
            "|---|---|---|---|---|---|---|",
            f"| {drain.peak} | {result['drain_seconds']} s | {result['capacity_per_s']}/s | "
            f"{result['backlog_over_capacity_s']} s | {result['drain_over_ideal']} | {result['timeouts']} | "
            f"{result['new_dead_letters']} |",
            "",
            "Reconcile after the drain:",
            "",
            *(f"    {line}" for line in report.summary().splitlines()),
        ]
    )
    write_results("burst", result, markdown)
    print(markdown)
    stack.close()


if __name__ == "__main__":
    main()
