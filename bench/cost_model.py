"""Cost per million changes on AWS of the fetch side (fetcher invocations, their duration, the fetch queue), from
bench_fetcher's measured invocations, SQS requests and durations per message shape.

Reads bench/results/fetcher.json (make bench writes it), prints the table docs/cost.md shows and writes it to
bench/results/cost.md. Prices and their sources are in docs/cost.md; they are parameters here so that the table
can be recomputed when they change. The parser side (rings, drainers) is docs/cost.md's "With the change log".

    .venv/bin/python -m bench.cost_model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

LAMBDA_PER_MILLION_REQUESTS = 0.20  # USD, us-east-1 (docs/cost.md: sources and date)
LAMBDA_PER_GB_SECOND = 0.0000166667  # USD, x86_64, first tier
SQS_PER_MILLION_REQUESTS = 0.40  # USD, standard queue, first tier; a request is billed per 64 KB of payload
MEMORY_GB = 256 / 1024  # template.yaml Globals.Function.MemorySize
SECONDS_PER_MONTH = 730 * 3600


def per_million(shape: dict[str, Any]) -> dict[str, float]:
    """USD per 1,000,000 changes for one message shape of bench_fetcher."""
    invocations = shape["invocations_per_1000"] * 1000
    gb_seconds = MEMORY_GB * 1_000_000 / shape["changes_per_s"]  # wall time in the entry, network one hop away
    lambda_requests = invocations / 1e6 * LAMBDA_PER_MILLION_REQUESTS
    lambda_compute = gb_seconds * LAMBDA_PER_GB_SECOND
    sqs = shape["sqs_requests_per_1000"] * 1000 / 1e6 * SQS_PER_MILLION_REQUESTS
    return {
        "fetcher_invocations": invocations,
        "sqs_requests": shape["sqs_requests_per_1000"] * 1000,
        "lambda_requests": lambda_requests,
        "lambda_compute": lambda_compute,
        "sqs": sqs,
        "total": lambda_requests + lambda_compute + sqs,
    }


def main() -> int:
    result = json.loads((RESULTS / "fetcher.json").read_text())
    shapes = {
        "one message a change, 10 an invocation (before)": result["shapes"]["one a change"],
        f"packed, {result['fetch_batch_size']} messages an invocation": result["shapes"]["packed"],
    }
    lines = [
        f"Measured in process (bench/results/fetcher.json, {result['rows']} changes, drained "
        f"{result['drained_batch']} at a time, this machine); {MEMORY_GB * 1024:.0f} MB functions.",
        "",
        "| fetch side | fetcher invocations | SQS requests (billed) | Lambda requests | Lambda GB-s | SQS "
        "| **USD per million changes** | USD/month at 100 changes/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, shape in shapes.items():
        cost = per_million(shape)
        per_month_100 = cost["total"] * SECONDS_PER_MONTH * 100 / 1e6
        lines.append(
            f"| {name} | {cost['fetcher_invocations']:,.0f} | {cost['sqs_requests']:,.0f} "
            f"| {cost['lambda_requests']:.3f} | {cost['lambda_compute']:.3f} | {cost['sqs']:.3f} "
            f"| **{cost['total']:.3f}** | {per_month_100:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
