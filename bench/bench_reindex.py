"""Benchmark: `fanout reindex` of posts beside a live writer — copy rate with 1 and 4 workers, writer latency.

One run on the local services (MySQL 8.0, OpenSearch, DynamoDB on ministack), side by side:
  (0) the live writer alone, right before each reindex: UPDATE a random post, commit, then the fetch path
      applies it (both sinks; during a reindex, OpenSearch twice: both generations) — its latency per change,
      p50 and p95;
  (1) `fanout reindex posts` (the CLI, its own process as an operator runs it) with 1 copy worker beside the
      same writer: the copy's rows/s and the writer's latency meanwhile;
  (2) the same with `--workers 4` (after the previous old generation is dropped).
The portable figures are ratios from this one run: 4 workers over 1, and the writer's latency during a reindex
over its latency alone. Time per million rows = 1,000,000 / copy rows/s.

    .venv/bin/python -m bench.bench_reindex                          # 100,000 rows (the issue's size)
    BENCH_REINDEX_ROWS=20000 .venv/bin/python -m bench.bench_reindex # a smaller table
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, create_replica_table, local_services, write_results
from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.observability import metrics_unpublished
from fanout.operations.backfill import BackfillJob, run_backfill
from fanout.operations.reconcile import SinkReaders
from fanout.operations.reindex import Reindex
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.generations import settle_seconds
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from local.database import create_database, drop_database
from local.deploy import aws_client
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.mappings import in_index
from tests.support.sequences import numbers

ROWS = int(os.environ.get("BENCH_REINDEX_ROWS", "100000"))
TTL = 1.0  # the write set's lifetime in this process's fetchers (one writer, in process: nothing else to wait for)
BASELINE_S = 15.0


class Writer:
    """UPDATE one random post a time and apply it through the fetch path at once; latency per change."""

    def __init__(self, settings: DatabaseSettings, mappings: Mappings, opensearch: Any, table: Any) -> None:
        self.conn, self.reader = connect(settings), connect(settings)
        sinks = [OpenSearchSink(opensearch, targets_ttl=TTL), dynamodb_sink(table, tombstone_ttl_seconds=3600)]
        self.fetcher = Fetcher(mappings, DatabaseSource.over(self.reader), sinks)
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.work)

    def work(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            key = rng.randrange(1, ROWS + 1)
            started = time.perf_counter()
            with self.conn.cursor() as cur:
                cur.execute("UPDATE posts SET title = %s WHERE id = %s", (f"t{rng.random()}", key))
            self.fetcher.apply([Change("posts", (("id", key),), "update", int(time.time() * 1e6))])
            self.latencies.append(time.perf_counter() - started)

    def measure(self, during: Any) -> tuple[Any, dict[str, float]]:
        """Run ``during()`` with the writer going; the result and the writer's latency meanwhile."""
        self.latencies = []
        self.stop.clear()
        self.thread = threading.Thread(target=self.work)
        self.thread.start()
        try:
            result = during()
        finally:
            self.stop.set()
            self.thread.join()
        ordered = sorted(self.latencies)
        return result, {
            "changes": len(ordered),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 1),
        }

    def close(self) -> None:
        self.conn.close()
        self.reader.close()


def main() -> int:
    cfg = local_services()
    db_name = create_database(cfg)
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password)
    conn = connect(settings)
    dynamodb, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    posts = default_mappings().get("posts")
    assert posts is not None
    index = db_name.replace("_", "-")
    mappings = Mappings({"posts": in_index(posts, index)})
    sqs = aws_client(cfg, "sqs")
    dlq = sqs.create_queue(QueueName=f"{db_name}-dlq")["QueueUrl"]
    mapping_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"{db_name}-tables.json"
    document = json.loads((ROOT / "layers" / "common" / "fanout" / "tables.json").read_text())
    document["tables"]["posts"]["opensearch"]["index"] = index
    mapping_file.write_text(json.dumps(document))
    env = {
        **os.environ,
        **cfg.aws_env(),
        **cfg.db_env(),
        "DB_NAME": db_name,
        "OPENSEARCH_ENDPOINT": cfg.opensearch_endpoint,
        "DYNAMODB_TABLE": table.name,
        "DEAD_LETTER_QUEUE_URL": dlq,
        "FANOUT_MAPPING_FILE": str(mapping_file),
        "LOG_LEVEL": "WARNING",
    }
    fanout = str(Path(sys.executable).parent / "fanout")

    def reindex_by_cli(workers: int) -> dict[str, Any]:
        done = subprocess.run(
            [fanout, "reindex", "posts", "--workers", str(workers), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return dict(json.loads(done.stdout))

    writer = Writer(settings, mappings, opensearch, table)
    results: dict[str, Any] = {"rows": ROWS}
    try:
        with conn.cursor() as cur:
            cur.execute((ROOT / "local" / "demo_schema.sql").read_text().split(";")[0])
            cur.execute((ROOT / "db" / "migrations" / "V005__backfill_checkpoint.sql").read_text())
            cur.execute(
                "INSERT INTO posts (id, title, body, author, status) SELECT seq, CONCAT('post ', seq), "  # noqa: S608
                f"REPEAT('body ', 40), 'bench', 'published' FROM {numbers(1, ROWS)} s"
            )
        run_backfill(conn, BackfillJob("posts"), writer.fetcher)
        readers = SinkReaders(opensearch, dynamodb, table.name)
        # the drop's wait covers fetchers elsewhere and their requests in flight; this one writer (whose cache
        # lives TTL) needs only the settle
        dropper = Reindex(
            opensearch, conn, mappings, readers, "1h", targets_ttl=TTL, sleep=lambda s: time.sleep(settle_seconds(TTL))
        )
        for workers in (1, 4):  # the writer alone right before each reindex: the machine's load drifts
            _, alone = writer.measure(lambda: time.sleep(BASELINE_S))
            done, latency = writer.measure(lambda w=workers: reindex_by_cli(w))
            results[f"workers_{workers}"] = {
                "copy_rows_per_s": done["copy"]["rows_per_s"],
                "reindex_elapsed_s": round(done["elapsed_s"], 1),
                "writer_alone_before": alone,
                "writer": latency,
            }
            dropper.drop_old("posts")
    finally:
        writer.close()
        mapping_file.unlink(missing_ok=True)
        sqs.delete_queue(QueueUrl=dlq)
        table.delete()
        delete_index(opensearch, index)
        conn.close()
        drop_database(cfg, db_name)
    one, four = results["workers_1"], results["workers_4"]
    results["copy_4_over_1"] = round(four["copy_rows_per_s"] / one["copy_rows_per_s"], 2)
    for name, run in (("1", one), ("4", four)):
        alone = run["writer_alone_before"]
        results[f"writer_p50_during_{name}_over_alone"] = round(run["writer"]["p50_ms"] / alone["p50_ms"], 2)
        results[f"writer_p95_during_{name}_over_alone"] = round(run["writer"]["p95_ms"] / alone["p95_ms"], 2)
    minutes = {w: round(1_000_000 / results[f"workers_{w}"]["copy_rows_per_s"] / 60, 1) for w in (1, 4)}
    write_results(
        "reindex",
        results,
        f"# Reindex of posts beside a live writer ({ROWS:,} rows, one run)\n\n"
        "`.venv/bin/python -m bench.bench_reindex` (BENCH_REINDEX_ROWS to change the size). The reindex is the\n"
        "`fanout reindex posts` CLI in its own process; the writer updates a random post and applies it through the\n"
        "fetch path in this one (both sinks; during a reindex, both generations). Whole reindex: open, the 12 s\n"
        "settle, copy, verify (a full reconcile of the new generation), swap. Two cores shared with other work:\n"
        "read the ratios, not the absolute figures.\n\n"
        "| | copy rows/s | time per million rows | whole reindex (s) | writer p50 ms | writer p95 ms |\n"
        "|---|---|---|---|---|---|\n"
        + "".join(
            f"| writer alone ({BASELINE_S:.0f} s, just before) | | | | {run['writer_alone_before']['p50_ms']} "
            f"| {run['writer_alone_before']['p95_ms']} |\n"
            f"| reindex, {w} worker{'s' if w > 1 else ''} | {run['copy_rows_per_s']} | {minutes[w]} min "
            f"| {run['reindex_elapsed_s']} | {run['writer']['p50_ms']} | {run['writer']['p95_ms']} |\n"
            for w, run in ((1, one), (4, four))
        )
        + "\n"
        f"4 workers over 1: **{results['copy_4_over_1']}×** copy rate. Writer latency during the reindex over "
        f"alone just before: p50 **{results['writer_p50_during_1_over_alone']}×** (1 worker), "
        f"**{results['writer_p50_during_4_over_alone']}×** (4 workers); p95 "
        f"{results['writer_p95_during_1_over_alone']}×, {results['writer_p95_during_4_over_alone']}×.\n",
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    with metrics_unpublished():  # off Lambda nothing reads the EMF blobs the writer's fetches would print
        sys.exit(main())
