"""Benchmark: batched conditional writes to DynamoDB, and the backfill rate against what DynamoDB takes.

In one process run, on the same local DynamoDB (ministack) and the same items (posts as the
backfill writes them), side by side:

  (a) queued batches of BATCH changes through the DynamoDB sink, before and after: the per-row
      conditional PutItem, 8 in parallel (the sink's batch path before TransactWriteItems), and
      the sink's apply_batch (TransactWriteItems of up to 100 conditional Puts); DynamoDB requests
      per 1,000 changes counted from botocore's sends, write units per 1,000 changes from the items'
      sizes by DynamoDB's rule (1 unit per KB for PutItem, 2 for a transactional write);
  (b) the backfill (both sinks, the batched fetch path, fanout.operations.backfill{,_parallel})
      with 1 and with WORKERS workers, against one plain boto3 client's conditional PutItem calls
      and against WORKERS clients sending the same conditional writes as TransactWriteItems of 100
      and nothing else (what this DynamoDB takes in the batched form, driven alone).

    BENCH_ROWS=2000 .venv/bin/python -m bench.bench_dynamodb_batches   # -> bench/results/dynamodb_batches.{json,md}

Absolute numbers depend on this shared 2-core machine (ministack is Python, on the same cores as
everything else); the ratios, in the same run, are the result.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.harness import create_replica_table, local_services
from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping, default_mappings
from fanout.operations.backfill import BackfillJob, run_backfill
from fanout.operations.backfill_parallel import run_parallel_backfill
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.dynamodb import CONDITION, MAX_TRANSACTION_ITEMS, DynamoDBSink, dynamodb_item, dynamodb_item_size
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from fanout.source.rows import RowState
from local.config import LocalConfig
from local.database import create_database, drop_database
from tests.support.aws import dynamodb_sink, table_client
from tests.support.indices import delete_index
from tests.support.mappings import in_index
from tests.support.sequences import numbers

ROOT = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("BENCH_ROWS", "2000"))
BATCH = 100  # changes per queued fetcher batch
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
OUT = ROOT / "bench" / "results"
POSTS: TableMapping = default_mappings().get("posts")  # type: ignore[assignment]


def post(key: int) -> dict[str, Any]:
    return {"id": key, "title": f"post {key}", "body": "body " * 40, "author": "bench", "status": "published"}


def states(n: int) -> list[tuple[Change, RowState]]:
    return [(Change("posts", (("id", k),), "update", 1), RowState(post(k), 1_000_000 + k)) for k in range(1, n + 1)]


class Counted:
    """A fresh replica table whose client's requests are counted."""

    def __init__(self, cfg: LocalConfig, name: str) -> None:
        self.dynamodb, self.table = create_replica_table(cfg, name)
        self.requests = 0
        self.client = table_client(self.table)  # the sink's low-level client, counted
        self.client.meta.events.register("before-send.dynamodb.*", self._count)

    def _count(self, **_: Any) -> None:
        self.requests += 1

    def close(self) -> None:
        self.table.delete()


def write_units(items: list[tuple[Change, RowState]], transactional: bool) -> int:
    """DynamoDB's rule: a write costs 1 unit per started KB of the item, twice that in a transaction."""
    per = 2 if transactional else 1
    sizes = [dynamodb_item_size(dynamodb_item(POSTS, c, s.row or {}, s.version)) for c, s in items]
    return sum(per * max(1, math.ceil(size / 1024)) for size in sizes)


def queued_batches(cfg: LocalConfig, tag: str) -> dict[str, Any]:
    items = states(ROWS)
    batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    out: dict[str, Any] = {}
    # before: the per-row conditional PutItem, 8 in parallel on the Table's client
    before = Counted(cfg, f"{tag}-before")
    sink = DynamoDBSink(before.client, before.table.name, tombstone_ttl_seconds=3600)
    pool = ThreadPoolExecutor(max_workers=8)
    started = time.perf_counter()
    for batch in batches:
        list(pool.map(lambda item: sink.apply(POSTS, *item), batch))
    elapsed = time.perf_counter() - started
    pool.shutdown()
    out["before: PutItem x8 parallel"] = {
        "requests_per_1000": round(before.requests * 1000 / ROWS, 1),
        "write_units_per_1000": round(write_units(items, False) * 1000 / ROWS, 1),
        "changes_per_s": round(ROWS / elapsed, 1),
    }
    before.close()
    # after: the sink's batch path, in either form (DYNAMODB_BATCH_WRITES)
    for name, form, transactional in (
        ("after: TransactWriteItems (default)", "transactions", True),
        ("after: DYNAMODB_BATCH_WRITES=puts", "puts", False),
    ):
        after = Counted(cfg, f"{tag}-{form}")
        sink = DynamoDBSink(after.client, after.table.name, tombstone_ttl_seconds=3600, batch_writes=form)
        started = time.perf_counter()
        for batch in batches:
            sink.apply_batch(POSTS, batch)
        elapsed = time.perf_counter() - started
        out[name] = {
            "requests_per_1000": round(after.requests * 1000 / ROWS, 1),
            "write_units_per_1000": round(write_units(items, transactional) * 1000 / ROWS, 1),
            "changes_per_s": round(ROWS / elapsed, 1),
        }
        after.close()
    return out


def plain_put_item_rate(cfg: LocalConfig, tag: str) -> float:
    """One plain boto3 client, one conditional PutItem after another."""
    target = Counted(cfg, f"{tag}-plain")
    items = [dynamodb_item(POSTS, c, s.row or {}, s.version) for c, s in states(ROWS)]
    started = time.perf_counter()
    for item in items:
        target.table.put_item(
            Item=item,
            ConditionExpression=CONDITION,
            ExpressionAttributeNames={"#pk": "pk", "#version": "_version"},
            ExpressionAttributeValues={":version": item["_version"]},
        )
    elapsed = time.perf_counter() - started
    target.close()
    return round(ROWS / elapsed, 1)


def batched_form_rate(cfg: LocalConfig, tag: str, clients: int) -> float:
    """``clients`` threads, each its own client, sending TransactWriteItems of 100 conditional Puts."""
    target = Counted(cfg, f"{tag}-batched")
    items = [dynamodb_item(POSTS, c, s.row or {}, s.version) for c, s in states(ROWS)]
    calls = [items[i : i + MAX_TRANSACTION_ITEMS] for i in range(0, len(items), MAX_TRANSACTION_ITEMS)]
    own = [create_replica_client(cfg) for _ in range(clients)]

    def send(work: tuple[int, list[dict[str, Any]]]) -> None:
        index, chunk = work
        own[index % clients].transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": target.table.name,
                        "Item": item,
                        "ConditionExpression": CONDITION,
                        "ExpressionAttributeNames": {"#pk": "pk", "#version": "_version"},
                        "ExpressionAttributeValues": {":version": Decimal(item["_version"])},
                    }
                }
                for item in chunk
            ]
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, enumerate(calls)))
    elapsed = time.perf_counter() - started
    target.close()
    return round(ROWS / elapsed, 1)


def create_replica_client(cfg: LocalConfig) -> Any:
    """A client that serialises Python values, as the sink's (a resource's client)."""
    import boto3

    return boto3.resource(
        "dynamodb",
        endpoint_url=cfg.aws_endpoint,
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).meta.client


def backfill_rate(cfg: LocalConfig, workers: int, opensearch_too: bool = True) -> dict[str, Any]:
    """A fresh table of ROWS posts backfilled to both sinks (or DynamoDB alone) by ``workers`` workers."""
    db_name = create_database(cfg)
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password)
    conn = connect(settings)
    dynamodb, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    index = db_name.replace("_", "-")
    mappings = Mappings({"posts": in_index(POSTS, index)})
    opened: list[Any] = [conn]
    try:
        with conn.cursor() as cur:
            cur.execute((ROOT / "local" / "demo_schema.sql").read_text().split(";")[0])
            cur.execute((ROOT / "db" / "migrations" / "V005__backfill_checkpoint.sql").read_text())
            cur.execute(
                "INSERT INTO posts (id, title, body, author, status) SELECT seq, CONCAT('post ', seq), "  # noqa: S608
                f"REPEAT('body ', 40), 'bench', 'published' FROM {numbers(1, ROWS)} s"
            )

        def runner() -> Any:
            own, reader = connect(settings), connect(settings)
            opened.extend((own, reader))
            sinks: list[Any] = [dynamodb_sink(table, 3600)]
            if opensearch_too:
                sinks.insert(0, OpenSearchSink(make_client(cfg.opensearch_endpoint)))

            def run(job: BackfillJob, **options: Any) -> Any:
                return run_backfill(own, job, Fetcher(mappings, DatabaseSource.over(reader), sinks), **options)

            return run

        runners = [runner() for _ in range(workers)]
        started = time.perf_counter()
        if workers == 1:
            result = runners[0](BackfillJob("posts"))
            assert result.status == "done" and result.rows_done == ROWS
        else:
            parallel = run_parallel_backfill(conn, mappings.get("posts"), BackfillJob("posts"), runners)  # type: ignore[arg-type]
            assert parallel.status == "done" and parallel.as_dict()["rows_done"] == ROWS, parallel.as_dict()
        elapsed = time.perf_counter() - started
    finally:
        table.delete()
        delete_index(opensearch, index)
        for c in opened:
            c.close()
        drop_database(cfg, db_name)
    return {
        "workers": workers,
        "sinks": "both" if opensearch_too else "DynamoDB only",
        "rows_per_s": round(ROWS / elapsed, 1),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def main() -> int:
    cfg = local_services()
    tag = f"fanout-bench-{os.getpid()}"
    result: dict[str, Any] = {"rows": ROWS, "queued_batch": BATCH, "workers": WORKERS}
    # The fetch path's EMF metric lines (printed, as in Lambda) stay out of the output; their cost stays in.
    report, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    result["queued"] = queued_batches(cfg, tag)
    result["plain_put_item_rows_per_s"] = plain_put_item_rate(cfg, tag)
    result["batched_form_rows_per_s"] = batched_form_rate(cfg, tag, WORKERS)
    result["backfill"] = [backfill_rate(cfg, 1), backfill_rate(cfg, WORKERS), backfill_rate(cfg, WORKERS, False)]
    best = result["backfill"][1]["rows_per_s"]
    result["backfill_over_plain_put_item"] = ratio(best, result["plain_put_item_rows_per_s"])
    result["backfill_over_batched_form"] = ratio(best, result["batched_form_rows_per_s"])
    write_results(result)
    print(json.dumps(result, indent=2), file=report)
    return 0


def write_results(result: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dynamodb_batches.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Batched conditional writes to DynamoDB, and the backfill against what DynamoDB takes (one run)",
        "",
        f"{result['rows']:,} posts as the backfill writes them; ministack DynamoDB on this shared 2-core machine "
        "(`bench/bench_dynamodb_batches.py`). Write units by DynamoDB's rule from the items' sizes.",
        "",
        f"## Queued batches of {result['queued_batch']} through the DynamoDB sink",
        "",
        "| sink batch path | DynamoDB requests /1k changes | write units /1k changes | changes/s |",
        "|---|---|---|---|",
    ]
    for name, r in result["queued"].items():
        lines.append(f"| {name} | {r['requests_per_1000']} | {r['write_units_per_1000']} | {r['changes_per_s']} |")
    lines += [
        "",
        "## Backfill against the DynamoDB it writes to",
        "",
        "| what | rows/s |",
        "|---|---|",
        f"| one plain boto3 client, conditional PutItem one after another | {result['plain_put_item_rows_per_s']} |",
        f"| {result['workers']} clients, TransactWriteItems of 100 conditional Puts, nothing else "
        f"| {result['batched_form_rows_per_s']} |",
    ]
    for run in result["backfill"]:
        lines.append(f"| backfill ({run['sinks']}), {run['workers']} worker(s) | {run['rows_per_s']} |")
    lines += [
        "",
        "| backfill run | over one plain client's PutItem | over the batched form driven alone |",
        "|---|---|---|",
    ]
    for run in result["backfill"]:
        lines.append(
            f"| {run['sinks']}, {run['workers']} worker(s) "
            f"| {ratio(run['rows_per_s'], result['plain_put_item_rows_per_s'])}× "
            f"| {ratio(run['rows_per_s'], result['batched_form_rows_per_s'])}× |"
        )
    lines.append("")
    (OUT / "dynamodb_batches.md").write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
