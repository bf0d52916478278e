"""Benchmark: composed documents beside single-table ones, and the fan-out of a parent change.

In one process run, on the local MySQL 8.0, OpenSearch node and ministack's DynamoDB:
  (a) per document, the fetch path (Fetcher.apply: the batched read, both sinks) for ``posts``
      (one row) and for ``articles`` composed of an author, 5 comments and 3 tags: source statements
      (the session's Com_select), document bytes (the OpenSearch JSON) and time, interleaved rounds;
  (b) an author renamed, with 1, 100 and 10,000 published articles: the change via the ``author``
      relation resolved to its roots and every article rebuilt, at most PAGES_PER_INVOCATION pages of
      roots an invocation, each continuation delivered in process as soon as it is handed on (no queue
      latency); time until all are rebuilt, the invocations and the longest one (what the fetcher's
      timeout bounds), and per document the source statements and sink requests (OpenSearch _bulk,
      DynamoDB calls).
Absolute numbers depend on this shared 2-core machine; the ratios are the result.

    .venv/bin/python -m bench.bench_composed   # (make bench runs it) writes bench/results/composed.{json,md}
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import create_replica_table, local_services
from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.related import PAGES_PER_INVOCATION
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink, make_client, opensearch_document
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource, RowState
from local.database import create_database, drop_database, run_sql_file
from tests.support.aws import table_client
from tests.support.fakes import RecordingQueue
from tests.support.indices import delete_index
from tests.support.mappings import in_index
from tests.support.sequences import numbers

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = 300
ROUNDS = 3
FAN_OUT = (1, 100, 10_000)


class Counted:
    """Counts the calls a sink client makes (requests per document)."""

    def __init__(self, inner: Any, names: tuple[str, ...]) -> None:
        self._inner, self._names, self.calls = inner, names, 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name in self._names:

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                return value(*args, **kwargs)

            return counted
        return value


def selects(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Com_select'")
        return int(cur.fetchone()[1])


def main() -> int:
    cfg = local_services()
    db_name = create_database(cfg)
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password)
    conn = connect(settings)
    run_sql_file(conn, ROOT / "local" / "demo_schema.sql")
    n = DOCUMENTS
    top = 10_000 + max(FAN_OUT)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO authors (id, name) VALUES (1, 'Ann'), (2, 'Fan Out')")
        cur.execute(
            f"INSERT INTO posts (id, title, body, author, status) SELECT seq, CONCAT('post ', seq), "  # noqa: S608
            f"REPEAT('body ', 40), 'Ann', 'published' FROM {numbers(1, n)} s"
        )
        cur.execute(
            f"INSERT INTO articles (id, title, body, status, author_id) SELECT seq, CONCAT('post ', seq), "  # noqa: S608
            f"REPEAT('body ', 40), 'published', 1 FROM {numbers(1, n)} s"
        )
        cur.execute(
            "INSERT INTO comments (article_id, commenter, body, created_at) SELECT a.seq, 'c', "  # noqa: S608
            f"CONCAT('comment ', c.seq), '2026-01-01' + INTERVAL c.seq DAY FROM {numbers(1, n)} a "
            f"JOIN {numbers(1, 5)} c"
        )
        cur.execute("INSERT INTO tags (id, name) VALUES (1, 'red'), (2, 'green'), (3, 'blue')")
        cur.execute(
            f"INSERT INTO article_tags SELECT a.seq, t.seq FROM {numbers(1, n)} a JOIN {numbers(1, 3)} t"  # noqa: S608
        )
        cur.execute(
            f"INSERT INTO articles (id, title, body, status, author_id) SELECT seq, CONCAT('fan ', seq), "  # noqa: S608
            f"'b', 'published', NULL FROM {numbers(10_001, top)} s"
        )
    dynamodb, table = create_replica_table(cfg, db_name)
    client = make_client(cfg.opensearch_endpoint)
    index = db_name.replace("_", "-")
    bundled = default_mappings().tables
    mappings = Mappings(
        {
            "posts": in_index(bundled["posts"], f"{index}-posts"),
            "articles": in_index(bundled["articles"], f"{index}-articles"),
        }
    )
    bulk = Counted(client, ("bulk", "index", "delete"))
    ddb_client = Counted(table_client(table), ("transact_write_items", "put_item"))
    sinks = [OpenSearchSink(bulk), DynamoDBSink(ddb_client, table.name, tombstone_ttl_seconds=3600)]
    now_us = int(time.time() * 1_000_000)

    def fetch(changes: list[Change], queue: ChangeQueue | None = None) -> None:
        Fetcher(mappings, DatabaseSource.over(conn), sinks, continuations=queue).apply(changes)

    per_table = {t: [Change(t, (("id", i + 1),), "update", now_us) for i in range(n)] for t in ("posts", "articles")}
    result: dict[str, Any] = {"documents": n, "rounds": ROUNDS}
    try:
        for changes in per_table.values():
            fetch(changes)  # warm: index creation, connections
        timings: dict[str, list[float]] = {t: [] for t in per_table}
        reads: dict[str, float] = {}
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both
            for t, changes in per_table.items():
                before = selects(conn)
                started = time.perf_counter()
                fetch(changes)
                timings[t].append((time.perf_counter() - started) / n * 1000)
                reads[t] = (selects(conn) - before) / n  # SHOW STATUS is not a Com_select
        sizes = {}
        for t in per_table:
            [state] = DatabaseSource.over(conn).read_rows(mappings.tables[t], per_table[t][:1])
            assert isinstance(state, RowState) and state.row is not None
            sizes[t] = len(json.dumps(opensearch_document(mappings.tables[t], state.row), default=str).encode())
        medians = {t: statistics.median(v) for t, v in timings.items()}
        result["per_document"] = {
            t: {"ms": round(medians[t], 3), "source_statements": round(reads[t], 3), "bytes": sizes[t]}
            for t in per_table
        }
        result["composed_over_single"] = {
            "time": round(medians["articles"] / medians["posts"], 2),
            "source_statements": round(reads["articles"] / reads["posts"], 2),
            "bytes": round(sizes["articles"] / sizes["posts"], 2),
        }
        fan_out = []
        start = 10_001
        for roots in FAN_OUT:
            with conn.cursor() as cur:  # this author's articles: exactly ``roots`` of them
                cur.execute("UPDATE articles SET author_id = NULL WHERE author_id = 2")
                cur.execute("UPDATE articles SET author_id = 2 WHERE id BETWEEN %s AND %s", (start, start + roots - 1))
                cur.execute("UPDATE authors SET name = %s WHERE id = 2", (f"renamed for {roots}",))
            via = Change("articles", (("id", 2),), "update", now_us, via="author")
            bulk.calls = ddb_client.calls = 0
            before = selects(conn)
            started = time.perf_counter()
            pending, invocations, longest = [via], 0, 0.0
            while pending:  # each continuation delivered as the fetch queue would, one invocation each
                handed_on = RecordingQueue()
                invoked = time.perf_counter()
                fetch([pending.pop(0)], handed_on)
                longest = max(longest, time.perf_counter() - invoked)
                invocations += 1
                pending += [change for batch in handed_on.batches for change in batch]
            elapsed = time.perf_counter() - started
            statements = selects(conn) - before
            fan_out.append(
                {
                    "roots": roots,
                    "invocations": invocations,
                    "longest_invocation_seconds": round(longest, 3),
                    "seconds_until_all_rebuilt": round(elapsed, 3),
                    "ms_per_document": round(elapsed / roots * 1000, 3),
                    "source_statements_per_document": round(statements / roots, 3),
                    "opensearch_requests_per_document": round(bulk.calls / roots, 4),
                    "dynamodb_requests_per_document": round(ddb_client.calls / roots, 4),
                }
            )
        result["parent_change_fan_out"] = fan_out
    finally:
        table.delete()
        for m in mappings.tables.values():
            delete_index(client, m.opensearch.index)
        drop_database(cfg, db_name)
        del dynamodb
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "composed.json").write_text(json.dumps(result, indent=2) + "\n")
    per = result["per_document"]
    ratio = result["composed_over_single"]
    lines = [
        "# Composed documents beside single-table ones (`make bench`, bench/bench_composed.py)",
        "",
        f"{n} documents, median of {ROUNDS} interleaved rounds; an article = its row + author + 5 comments + 3 tags.",
        "",
        "| document | ms / document | source statements / document | OpenSearch bytes |",
        "|---|---|---|---|",
        f"| posts (one row) | {per['posts']['ms']:.2f} | {per['posts']['source_statements']:.3f} | "
        f"{per['posts']['bytes']} |",
        f"| articles (composed) | {per['articles']['ms']:.2f} | {per['articles']['source_statements']:.3f} | "
        f"{per['articles']['bytes']} |",
        f"| **composed / single** | **{ratio['time']}×** | **{ratio['source_statements']}×** | **{ratio['bytes']}×** |",
        "",
        "An author renamed: the change via `author` resolved to its articles (pages of 500, plain reads), "
        f"each rebuilt; at most {PAGES_PER_INVOCATION} pages an invocation, the rest handed on as a continuation, "
        "delivered in process at once (no queue latency).",
        "",
        "| articles of the author | invocations | longest invocation s | s until all rebuilt | ms / document | "
        "source statements / doc | OpenSearch requests / doc | DynamoDB requests / doc |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {f['roots']} | {f['invocations']} | {f['longest_invocation_seconds']} | "
            f"{f['seconds_until_all_rebuilt']} | {f['ms_per_document']} | "
            f"{f['source_statements_per_document']} | {f['opensearch_requests_per_document']} | "
            f"{f['dynamodb_requests_per_document']} |"
            for f in result["parent_change_fan_out"]
        ),
        "",
    ]
    (out / "composed.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
