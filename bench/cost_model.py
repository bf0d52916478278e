"""Cost per million changes on AWS, from the measured invocations and durations of bench_throughput.

Reads bench/results/throughput.json (make bench writes it), prints the table docs/cost.md shows
and writes it to bench/results/cost.md. Prices and their sources are in docs/cost.md; they are
parameters here so that the table can be recomputed when they change.

    .venv/bin/python -m bench.cost_model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

LAMBDA_PER_MILLION_REQUESTS = 0.20  # USD, us-east-1 (docs/cost.md: sources and date)
LAMBDA_PER_GB_SECOND = 0.0000166667  # USD, x86_64, first tier
SQS_PER_MILLION_REQUESTS = 0.40  # USD, standard queue, first tier; a request is up to 64 KB
MEMORY_GB = 256 / 1024  # template.yaml Globals.Function.MemorySize
SECONDS_PER_MONTH = 730 * 3600


def per_million(parser_ms: float, fetch_ms_per_change: float, batch: int | None) -> dict[str, float]:
    """USD per 1,000,000 changes; ``batch`` None is the per-row design (no queue)."""
    fetcher_invokes = 1_000_000 if batch is None else 1_000_000 / batch
    requests = 1_000_000 + fetcher_invokes  # one parser invoke per change in both designs
    gb_seconds = MEMORY_GB * (1_000_000 * max(parser_ms, 1.0) + 1_000_000 * fetch_ms_per_change) / 1000
    sqs = 0.0 if batch is None else 1_000_000 + 2 * fetcher_invokes  # send; receive + delete per batch
    lambda_requests = requests / 1e6 * LAMBDA_PER_MILLION_REQUESTS
    lambda_compute = gb_seconds * LAMBDA_PER_GB_SECOND
    sqs_cost = sqs / 1e6 * SQS_PER_MILLION_REQUESTS
    return {
        "lambda_requests": lambda_requests,
        "lambda_compute": lambda_compute,
        "sqs": sqs_cost,
        "total": lambda_requests + lambda_compute + sqs_cost,
    }


def main() -> int:
    result = json.loads((RESULTS / "throughput.json").read_text())
    burst = result["workloads"]["burst"]
    per_row, queued = burst["per-row"], burst["queued"]
    parser_ms = per_row["parser_ms_per_invocation"]
    per_row_fetch = per_row["fetcher_ms_per_invocation"]  # one change per invocation
    batched_fetch = queued["fetcher_ms_per_invocation"] / result["queued_batch_size"]  # per change, batched
    designs = {
        "per-row (direct)": per_million(parser_ms, per_row_fetch, None),
        "queued, batches of 1 (a trickle)": per_million(parser_ms, per_row_fetch, 1),
        "queued, batches of 10 (default size)": per_million(parser_ms, batched_fetch, 10),
        "queued, batches of 100": per_million(parser_ms, batched_fetch, 100),
    }
    lines = [
        f"Measured (burst workload, this machine): parser {parser_ms:.2f} ms per invoke (billed as at least "
        f"1 ms); fetcher {per_row_fetch:.2f} ms per change alone, {batched_fetch:.2f} ms per change in "
        f"batches of {result['queued_batch_size']}; {MEMORY_GB * 1024:.0f} MB functions.",
        "",
        "| design | Lambda requests | Lambda GB-s | SQS | **USD per million changes** "
        "| USD/month at 1 change/s | USD/month at 100 changes/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cost in designs.items():
        per_month_1 = cost["total"] * SECONDS_PER_MONTH / 1e6
        lines.append(
            f"| {name} | {cost['lambda_requests']:.2f} | {cost['lambda_compute']:.2f} | {cost['sqs']:.2f} "
            f"| **{cost['total']:.2f}** | {per_month_1:.2f} | {per_month_1 * 100:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
