"""Benchmark: what the fetch path costs per change, beside the raw cost of its parts.

In one process run and on the same rows, it times
  (a) raw parts: a plain primary-key SELECT, one OpenSearch index request and one
      DynamoDB PutItem, back to back (the floor for a one-row-at-a-time design);
  (b) the fetcher's apply path: locking re-read with database-clock versions and
      version-gated writes to both sinks (fanout.pipeline.fetcher.Fetcher).
and reports (b)/(a): the overhead of correctness (locks, versions, conditions).
Absolute numbers depend on this shared 2-core machine; the ratio is the result.

    make bench              # writes bench/results/fetch_path.{json,md}
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from bench.harness import create_replica_table, local_services, posts_database
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.dynamodb import dynamodb_item
from fanout.sinks.opensearch import OpenSearchSink, make_client, opensearch_document
from fanout.source.reader import DatabaseSource
from local.database import drop_database
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.mappings import in_index

ROOT = Path(__file__).resolve().parent.parent
ROWS = 300
ROUNDS = 3


def main() -> int:

    cfg = local_services()
    db_name, conn = posts_database(cfg, ROWS)
    dynamodb, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    posts = default_mappings().get("posts")
    assert posts is not None

    mapping = in_index(posts, db_name.replace("_", "-"))
    mappings = Mappings({"posts": mapping})
    now_us = int(time.time() * 1_000_000)
    changes = [Change("posts", (("id", i + 1),), "update", now_us) for i in range(ROWS)]
    sinks = [OpenSearchSink(opensearch), dynamodb_sink(table, tombstone_ttl_seconds=3600)]
    select = "SELECT id, title, body, author, status, updated_at FROM posts WHERE id = %s"

    def raw() -> None:
        for change in changes:
            with conn.cursor() as cur:
                cur.execute(select, change.key_values)
                row = dict(zip((d[0] for d in cur.description), cur.fetchone(), strict=True))
            opensearch.index(
                index=mapping.opensearch.index, id=change.document_id, body=opensearch_document(mapping, row)
            )
            table.put_item(Item=dynamodb_item(mapping, change, row, 1))

    fetcher = Fetcher(mappings, DatabaseSource.over(conn), sinks)

    def fetch_path() -> None:
        fetcher.apply(changes)

    timings: dict[str, list[float]] = {"raw parts": [], "fetch path": []}
    try:
        raw()  # warm both paths (index creation, connection pools)
        fetch_path()
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both
            for name, run in (("raw parts", raw), ("fetch path", fetch_path)):
                started = time.perf_counter()
                run()
                timings[name].append((time.perf_counter() - started) / ROWS * 1000)
    finally:
        table.delete()
        delete_index(opensearch, mapping.opensearch.index)
        drop_database(cfg, db_name)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    ratio = medians["fetch path"] / medians["raw parts"]
    result = {
        "rows": ROWS,
        "rounds": ROUNDS,
        "ms_per_change": timings,
        "median_ms_per_change": medians,
        "fetch_path_over_raw": round(ratio, 2),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fetch_path.json").write_text(json.dumps(result, indent=2) + "\n")
    table_md = "\n".join(
        ["| path | median ms / change |", "|---|---|"]
        + [f"| {name} | {value:.2f} |" for name, value in medians.items()]
        + [f"| **fetch path / raw parts** | **{ratio:.2f}×** |"]
    )
    (out / "fetch_path.md").write_text(f"# Fetch path vs raw parts ({ROWS} rows × {ROUNDS} rounds)\n\n{table_md}\n")
    print(table_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
