"""Benchmark: a steady stream of single-row commits through the deployed local stack, and its lag.

Eight sessions (one writer thread and connection each) commit single-row INSERTs on a fixed schedule, together
``BENCH_STEADY_RATES`` changes a second, for ``BENCH_STEADY_SECONDS`` each. From there everything is the
deployed app: capture triggers, lambda_async (the loadable function and its bridge, 35 ms a call as Aurora's),
the parser draining the change log, the fetch queue, the fetcher function and both sinks. Per rate it reports

- commit → both sinks p50/p99: per change, the later of its lags at OpenSearch and DynamoDB (visible in both
  stores), read from the fetcher's batch lines (``changes applied``: per table and sink, each applied change's lag
  from its trigger time, taken when that sink acknowledged it, in the same order for every sink, so the lists pair
  up change by change); beside it commit → every sink, the change events' bus included (the message is
  acknowledged only then), and the p50/p99 of each stage (``fanout.pipeline.stage_times``);
- nothing missing: every written row is in OpenSearch and DynamoDB afterwards;
- fetcher invocations and queue messages per 1,000 changes (one batch line per invocation);
- the writer's statement time p50/p99 (the capture's cost to the application; it must not grow with the rate).

    make up
    BENCH_STEADY_RATES=50,1000 .venv/bin/python -m bench.bench_steady   # -> bench/results/steady.{json,md}

Before the measured rates, ``BENCH_STEADY_WARM_UP_SECONDS`` (10) of writes at the highest rate warm the functions
and settle; they are not reported.

``BENCH_STEADY_NAME`` names the results file (``steady``), so that a run before and one after a change sit side by
side. The machine (2 shared cores, a process per Lambda invocation on ministack) is the ceiling here, not AWS.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3

from bench.cpu_share import measure, snapshot
from bench.cpu_share import table as cpu_table
from bench.harness import AURORA_LAMBDA_ASYNC_MS, deployed_stack, lambda_async_bridge, log_lines, write_results
from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.reconcile import SinkReaders
from fanout.sinks.opensearch import make_client
from local.config import StackEnv
from local.database import source_connection

SESSIONS = 8
RATES = [int(r) for r in os.environ.get("BENCH_STEADY_RATES", "50,1000").split(",") if r]
SECONDS = float(os.environ.get("BENCH_STEADY_SECONDS", "30"))
NAME = os.environ.get("BENCH_STEADY_NAME", "steady")
# Seconds of writes at the highest rate before the measured runs, not kept: a deploy (or an idle stack) leaves no
# fetcher warm, and a steady stream that meets cold functions measures their start, not the pipeline (a run right
# after a deploy read p99 7.2 s at 1000/s, the same stack warm 1.3 s: bench/results/steady_1000_events.md).
WARM_UP_SECONDS = float(os.environ.get("BENCH_STEADY_WARM_UP_SECONDS", "10"))
SETTLE_TIMEOUT_S = 600
BATCH_LINE = "changes applied"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (as CloudWatch's pNN)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


@dataclass
class Session:
    ids: list[int]
    interval_s: float
    statement_ms: list[float] = field(default_factory=list)
    late_s: float = 0.0  # how far the writer fell behind its schedule at worst

    def run(self, env: StackEnv, start: float) -> None:
        conn = source_connection(env)
        try:
            with conn.cursor() as cur:
                for i, key in enumerate(self.ids):
                    due = start + i * self.interval_s
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    else:
                        self.late_s = max(self.late_s, -wait)
                    t = time.perf_counter()
                    cur.execute(
                        "INSERT INTO posts (id, title, body, author) VALUES (%s, %s, %s, 'bench')",
                        (key, f"steady {key}", "body " * 40),
                    )  # autocommit: one single-row commit
                    self.statement_ms.append((time.perf_counter() - t) * 1000)
        finally:
            conn.close()


# The figure: commit → visible in both stores, OpenSearch and the DynamoDB replica (each sink's lag is taken
# when that sink acknowledged the change). The change events' bus, where the mapping turns it on, is a third sink:
# commit → every sink (the events included) is reported beside it, and the message is acknowledged only then.
STORES = ("opensearch", "dynamodb")


def lags_of(lines: list[dict[str, Any]], table: str, sinks: tuple[str, ...] | None = None) -> tuple[list[float], int]:
    """Per applied change, commit → the later of ``sinks`` (every sink: None); and the changes the lines stand for."""
    both: list[float] = []
    changes = 0
    for fields in lines:
        changes += int(fields.get("changes", 0))
        entries = (fields.get("tables") or {}).get(table) or {}
        per_sink = [entry.get("lag_ms") or [] for name, entry in entries.items() if sinks is None or name in sinks]
        if not per_sink:
            continue
        if len({len(lags) for lags in per_sink}) == 1:
            both += [max(pair) for pair in zip(*per_sink, strict=True)]
        else:  # a stale or failed write in one sink only: its batch is counted by its slowest change
            worst = max(max(lags) for lags in per_sink if lags)
            both += [worst] * max(len(lags) for lags in per_sink)
    return both, changes


def run_rate(env: StackEnv, rate: int, readers: SinkReaders, logs: Any, seconds: float = SECONDS) -> dict[str, Any]:
    mappings = default_mappings()
    posts = mappings.get("posts")
    assert posts is not None
    total = int(rate * seconds)
    first = random.randrange(5 * 10**9, 6 * 10**9)
    ids = list(range(first, first + total))
    sessions = [Session(ids[s::SESSIONS], SESSIONS / rate) for s in range(SESSIONS)]
    start_ms = int(time.time() * 1000)
    start = time.monotonic() + 0.5
    cpu_before = snapshot()
    threads = [threading.Thread(target=s.run, args=(env, start)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = time.monotonic()
    cpu = measure(cpu_before, snapshot())  # the writes' window: where the machine's CPU went at this rate
    changes = [Change("posts", (("id", k),), "update", 1) for k in ids]
    doc_ids = [opensearch_document_id(posts, c) for c in changes]
    keys = [dynamodb_key(posts, c) for c in changes]
    missing = total
    while time.monotonic() - written < SETTLE_TIMEOUT_S:
        in_opensearch = sum(len(readers.documents(posts, doc_ids[i : i + 1000])) for i in range(0, total, 1000))
        in_dynamodb = sum(1 for item in readers.items(posts, keys) if not item.get("_deleted"))
        missing = total - min(in_opensearch, in_dynamodb)
        if not missing:
            break
        time.sleep(1.0)
    settled = time.monotonic()
    time.sleep(3.0)  # the last batch lines reach the local CloudWatch Logs
    lines = log_lines(logs, env.fetcher_log_group, BATCH_LINE, start_ms, int(time.time() * 1000))
    both, applied = lags_of(lines, "posts", STORES)
    every, _ = lags_of(lines, "posts")
    stages: dict[str, list[int]] = {}
    for fields in lines:
        for stage, entry in (fields.get("stages") or {}).items():
            stages.setdefault(stage, []).extend(entry.get("ms") or [])
    statement = [ms for s in sessions for ms in s.statement_ms]
    invocations = len(lines)
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "changes": total,
        "missing": missing,
        "writes_done_after_s": round(written - start, 2),
        "writer_late_max_s": round(max(s.late_s for s in sessions), 3),
        "settled_after_s": round(settled - start, 2),
        "commit_to_both_sinks_ms": {
            "p50": percentile(both, 50),
            "p99": percentile(both, 99),
            "max": max(both) if both else None,
            "samples": len(both),
        },
        "commit_to_every_sink_ms": {"p50": percentile(every, 50), "p99": percentile(every, 99)},
        "statement_ms": {"p50": round(percentile(statement, 50), 2), "p99": round(percentile(statement, 99), 2)},
        "fetcher_invocations_per_1000": round(invocations * 1000 / max(1, applied), 1),
        "changes_per_invocation": round(applied / max(1, invocations), 1),
        "messages_per_1000": _messages_per_1000(lines, applied),
        # changes the fetchers applied per change written: above 1, messages were received again while being
        # applied (a queue visibility timeout shorter than a batch's apply) or retried
        "applied_per_written": round(applied / total, 2),
        "cpu": cpu,
        "stages_ms": {stage: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for stage, v in stages.items()},
    }


def stage_table(runs: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(stage for r in runs for stage in r["stages_ms"]))
    head = "| rate | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    return head + "".join(
        f"| {r['rate_per_s']}/s | "
        + " | ".join(
            f"{r['stages_ms'][n]['p50']} / {r['stages_ms'][n]['p99']}" if n in r["stages_ms"] else "-" for n in names
        )
        + " |\n"
        for r in runs
    )


def _messages_per_1000(lines: list[dict[str, Any]], applied: int) -> float | None:
    """Queue messages per 1,000 changes, from the batch lines' ``messages`` (None: lines without it, one per change)."""
    if not lines or any("messages" not in fields for fields in lines):
        return None
    return round(sum(int(fields["messages"]) for fields in lines) * 1000 / max(1, applied), 1)


def main() -> int:
    env = StackEnv.read() or deployed_stack()
    readers = SinkReaders(
        make_client(env.opensearch_endpoint),
        boto3.resource(
            "dynamodb",
            endpoint_url=env.aws_endpoint_url,
            region_name=env.aws_default_region,
            aws_access_key_id=env.aws_access_key_id,
            aws_secret_access_key=env.aws_secret_access_key,
        ),
        env.dynamodb_table,
    )
    logs = boto3.client(
        "logs",
        endpoint_url=env.aws_endpoint_url,
        region_name=env.aws_default_region,
        aws_access_key_id=env.aws_access_key_id,
        aws_secret_access_key=env.aws_secret_access_key,
    )
    bridge = lambda_async_bridge()
    bridge.configure(env.parser_function_arn, delay_ms=AURORA_LAMBDA_ASYNC_MS)
    runs = []
    try:
        if WARM_UP_SECONDS > 0:  # settled (every row in both sinks) before the first measured run starts
            warm = run_rate(env, max(RATES), readers, logs, WARM_UP_SECONDS)
            print(json.dumps({"warm_up": warm["rate_per_s"], "seconds": WARM_UP_SECONDS, "missing": warm["missing"]}))
        for rate in RATES:
            run = run_rate(env, rate, readers, logs)
            print(json.dumps(run), flush=True)
            runs.append(run)
    finally:
        bridge.reset(env.parser_function_arn)
    result = {"sessions": SESSIONS, "lambda_async_ms_per_call": AURORA_LAMBDA_ASYNC_MS, "runs": runs}
    rows = "".join(
        f"| {r['rate_per_s']}/s | {r['changes']} | {r['missing']} | {r['commit_to_both_sinks_ms']['p50']} | "
        f"{r['commit_to_both_sinks_ms']['p99']} | {r['commit_to_every_sink_ms']['p50']} / "
        f"{r['commit_to_every_sink_ms']['p99']} | {r['settled_after_s']} s | {r['statement_ms']['p50']} / "
        f"{r['statement_ms']['p99']} | {r['fetcher_invocations_per_1000']} | "
        f"{r['messages_per_1000'] or '1000 (one a change)'} |\n"
        for r in runs
    )
    write_results(
        NAME,
        result,
        f"# Steady single-row commits through the deployed local stack ({NAME}, one run)\n\n"
        f"{SESSIONS} sessions, one writer thread each, single-row INSERT commits at a fixed rate for {SECONDS:g} s; "
        f"triggers, lambda_async ({AURORA_LAMBDA_ASYNC_MS} ms a call), parser, fetch queue, fetcher and both sinks "
        "deployed on the local stack (`bench/bench_steady.py`).\n\n"
        "| rate | changes | missing | commit → both sinks p50 ms | p99 ms | commit → every sink (events too) "
        "p50 / p99 ms | all in both sinks after | writer statement p50 / p99 ms | fetcher invocations /1k | "
        "queue messages /1k |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n" + rows + "\nPer stage, p50 / p99 ms "
        "(`fanout.pipeline.stage_times`):\n\n"
        + stage_table(runs)
        + "".join(
            f"\nWhere the CPU went at {r['rate_per_s']}/s (`bench/cpu_share.py`):\n\n"
            + cpu_table(r["cpu"], r["changes"])
            for r in runs
        ),
    )
    return 0 if all(r["missing"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
