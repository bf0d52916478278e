"""Benchmark: backfill and reconcile rates (rows/s) on this machine, and how they scale.

One process run, two tables of posts, measured one after the other: ROWS (default 100,000,
the issue's "large table") and a tenth of it. For each:
  (a) backfill (keyset pages of 500 keys handed to fanout.pipeline.fetcher.Fetcher.apply, the batched
      fetch path: one locking read per page, _bulk, conditional puts in TransactWriteItems);
  (b) full reconcile (source keyset pages + one OpenSearch ids query and BatchGetItem per page,
      then the orphan scans: OpenSearch search_after by _id and DynamoDB Scan);
  (c) sampled reconcile of 1000 rows (and about 1000 entries of each sink for orphans).
Absolute numbers depend on this shared 2-core machine; the portable results are the ratios:
reconcile/backfill speed, and the rate at ROWS over the rate at ROWS/10 (1.0 = linear).

    make bench              # writes bench/results/backfill_reconcile.{json,md}
    BENCH_BACKFILL_ROWS=20000 .venv/bin/python -m bench.bench_backfill_reconcile
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.harness import create_replica_table, local_services
from fanout.config import DatabaseSettings
from fanout.model.mapping import Mappings, default_mappings
from fanout.operations.backfill import BackfillJob, run_backfill
from fanout.operations.reconcile import SinkReaders, reconcile
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from local.config import LocalConfig
from local.database import create_database, drop_database
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.mappings import in_index
from tests.support.sequences import numbers

ROOT = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("BENCH_BACKFILL_ROWS", "100000"))


def measure(cfg: LocalConfig, rows: int) -> dict[str, float]:
    """Backfill, full and sampled reconcile of a fresh table of ``rows`` posts; rates in rows/s."""
    db_name = create_database(cfg)
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password)
    conn, reader = connect(settings), connect(settings)
    dynamodb, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    posts = default_mappings().get("posts")
    assert posts is not None
    mappings = Mappings({"posts": in_index(posts, db_name.replace("_", "-"))})
    try:
        with conn.cursor() as cur:
            cur.execute((ROOT / "local" / "demo_schema.sql").read_text().split(";")[0])
            cur.execute((ROOT / "db" / "migrations" / "V005__backfill_checkpoint.sql").read_text())
            fill = (
                "INSERT INTO posts (id, title, body, author, status) SELECT seq, CONCAT('post ', seq), "  # noqa: S608
                f"REPEAT('body ', 40), 'bench', 'published' FROM {numbers(1, rows)} s"
            )
            cur.execute(fill)
        sinks = [OpenSearchSink(opensearch), dynamodb_sink(table, tombstone_ttl_seconds=3600)]
        readers = SinkReaders(opensearch, dynamodb, table.name)
        started = time.monotonic()
        # one locking query per page, as the fetcher
        result = run_backfill(conn, BackfillJob("posts"), Fetcher(mappings, DatabaseSource.over(reader), sinks))
        backfill_s = time.monotonic() - started
        assert result.status == "done" and result.rows_done == rows
        full = reconcile(conn, mappings, readers)
        assert full.agrees and full.source_rows["posts"] == rows, full.summary()
        sample = reconcile(conn, mappings, readers, sample=1000)
        assert sample.agrees, sample.summary()
    finally:
        table.delete()
        delete_index(opensearch, db_name.replace("_", "-"))
        conn.close()
        reader.close()
        drop_database(cfg, db_name)
    return {
        "rows": rows,
        "backfill_rows_per_s": round(rows / backfill_s, 1),
        "reconcile_full_rows_per_s": round(rows / full.elapsed_s, 1),
        "reconcile_sample_rows_per_s": round(sample.rows_per_s, 1),
        "reconcile_full_over_backfill": round(backfill_s / full.elapsed_s, 2),
    }


def main() -> int:
    cfg = local_services()
    small, large = measure(cfg, max(1, ROWS // 10)), measure(cfg, ROWS)
    results = {
        "fetch_path": "batched: one locking read per page, _bulk, conditional puts in TransactWriteItems",
        "small": small,
        "large": large,
        "backfill_rate_large_over_small": round(large["backfill_rows_per_s"] / small["backfill_rows_per_s"], 2),
        "reconcile_rate_large_over_small": round(
            large["reconcile_full_rows_per_s"] / small["reconcile_full_rows_per_s"], 2
        ),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "backfill_reconcile.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        ("backfill", "backfill_rows_per_s"),
        ("reconcile, full (incl. orphan scans)", "reconcile_full_rows_per_s"),
        ("reconcile, sample of 1000 (incl. sampled orphans)", "reconcile_sample_rows_per_s"),
    ]
    table = "".join(f"| {label} | {small[key]} | {large[key]} |\n" for label, key in rows)
    (out / "backfill_reconcile.md").write_text(
        f"# Backfill and reconcile (posts, both sinks; {results['fetch_path']})\n\n"
        "Rates in rows/s, measured one after the other in one run (`make bench`); a ratio of 1.0\n"
        "between the sizes means the cost per row does not grow with the table.\n\n"
        f"| run | {small['rows']:,} rows | {large['rows']:,} rows |\n|---|---|---|\n{table}"
        f"| **full reconcile / backfill speed** | {small['reconcile_full_over_backfill']}× "
        f"| {large['reconcile_full_over_backfill']}× |\n\n"
        f"Rate at {large['rows']:,} rows over the rate at {small['rows']:,}: backfill "
        f"**{results['backfill_rate_large_over_small']}**, full reconcile "
        f"**{results['reconcile_rate_large_over_small']}**.\n"
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
