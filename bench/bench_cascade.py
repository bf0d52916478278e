"""Benchmark: what the cascade trigger adds to a DELETE that cascades to 10,000 rows.

On the local MySQL 8.0 (lambda_async the project's loadable function, its bridge remembering calls), the demo
schema (local/demo_schema.sql: ``articles.author_id`` -> ``authors`` ON DELETE CASCADE) in three schemas that
differ only in their triggers:
  (a) no capture triggers: the engine's cascade alone;
  (b) the capture triggers of the bundled mapping without the cascade triggers (what V007 installed);
  (c) the same with the cascade triggers (V008): the author's BEFORE DELETE trigger logs the 10,000 articles
      with one INSERT ... SELECT (and rings once).
Each round seeds an author with ROWS published articles (kill switch on, not timed), then times one
autocommit ``DELETE FROM authors WHERE id = ?``, the variants interleaved so drift on this shared 2-core
machine hits each alike. Reports the median per variant and (c) against (b) and (a).

    FANOUT_DB_PORT=... .venv/bin/python -m bench.bench_cascade   # writes bench/results/cascade.{json,md}
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter

from bench.harness import lambda_async_bridge, write_results
from fanout.capture.cascades import cascade_triggers
from fanout.capture.foreign_keys import read_foreign_keys
from fanout.capture.migrations import MigrationRunner
from fanout.capture.trigger_migration import capture_migration
from fanout.config import DatabaseSettings
from fanout.model.mapping import default_mappings
from fanout.source.connection import connect
from local.config import LocalConfig
from local.database import DEMO_SCHEMA, create_database, drop_database, run_sql_file
from local.services import ensure_mysql
from tests.support.sequences import numbers

ROWS = 10_000
ROUNDS = 5
ARN = "arn:aws:lambda:us-east-1:123456789012:function:fanout-bench-cascade"
VARIANTS = ("no capture triggers", "capture triggers, no cascade trigger", "capture + cascade triggers")
SEED = (
    "INSERT INTO articles (title, body, status, author_id) SELECT CONCAT('article ', seq), 'body', 'published', %s "
    "FROM "
)


def _install(settings: DatabaseSettings, variant: str, directory: Path) -> None:
    conn = connect(settings)
    try:
        run_sql_file(conn, DEMO_SCHEMA)
        keys = read_foreign_keys(conn, settings.name)
    finally:
        conn.close()
    if variant == VARIANTS[0]:
        return
    mappings = default_mappings()
    cascades = cascade_triggers(mappings, keys, 1) if variant == VARIANTS[2] else []
    directory.mkdir(parents=True)
    (directory / "V001__bench.sql").write_text(capture_migration(mappings, 1, [], cascades))
    MigrationRunner(lambda: connect(settings), directory, {"parser_function_arn": ARN}, applied_by="bench").migrate()


def _delete_cascading(conn: object, rows: int) -> tuple[float, int]:
    """Seed an author of ``rows`` articles (not timed), then time the DELETE; seconds and rows logged."""
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SET @fanout_disable = 1")
        cur.execute("INSERT INTO authors (name) VALUES ('bench')")
        author = cur.lastrowid
        cur.execute(SEED + f"{numbers(1, rows)} s", (author,))
        cur.execute("SET @fanout_disable = NULL")
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'fanout_change_log'"
                    " AND TABLE_SCHEMA = DATABASE()")  # fmt: skip
        has_log = cur.fetchone()[0] == 1
        if has_log:
            cur.execute("TRUNCATE TABLE fanout_change_log")
        started = perf_counter()
        cur.execute("DELETE FROM authors WHERE id = %s", (author,))
        elapsed = perf_counter() - started
        logged = 0
        if has_log:
            cur.execute("SELECT COUNT(*) FROM fanout_change_log")
            logged = int(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM articles")
        assert cur.fetchone()[0] == 0, "the cascade left articles behind"
    return elapsed, logged


def main(argv: Sequence[str] = ()) -> int:
    cfg = LocalConfig.from_env()
    ensure_mysql(cfg)
    lambda_async_bridge(cfg).configure(ARN, deliver=False)
    names = {variant: create_database(cfg, "fanout_bench_cascade") for variant in VARIANTS}
    work = Path(tempfile.mkdtemp(prefix="fanout-bench-cascade-"))
    timings: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    logged: dict[str, int] = {}
    conns = {}
    try:
        for n, (variant, name) in enumerate(names.items()):
            settings = DatabaseSettings(cfg.db_host, cfg.db_port, name, cfg.db_user, cfg.db_password)
            _install(settings, variant, work / f"{name}-{n}")
            conns[variant] = connect(settings)
        for conn in conns.values():  # warm-up
            _delete_cascading(conn, ROWS)
        for _ in range(ROUNDS):
            for variant, conn in conns.items():
                elapsed, logged[variant] = _delete_cascading(conn, ROWS)
                timings[variant].append(elapsed * 1000)
    finally:
        for conn in conns.values():
            conn.close()
        for name in names.values():
            drop_database(cfg, name)
        shutil.rmtree(work)

    medians = {variant: statistics.median(values) for variant, values in timings.items()}
    base, without = medians[VARIANTS[0]], medians[VARIANTS[1]]
    added = medians[VARIANTS[2]] - without
    result = {
        "rows_cascaded": ROWS,
        "rounds": ROUNDS,
        "ms_per_delete": timings,
        "median_ms_per_delete": medians,
        "rows_logged": logged,
        "cascade_trigger_adds_ms": round(added, 1),
        "cascade_trigger_adds_us_per_row": round(added * 1000 / ROWS, 2),
    }
    table = "\n".join(
        ["| triggers | median ms / DELETE | × engine alone | rows logged |", "|---|---|---|---|"]
        + [f"| {v} | {medians[v]:.1f} | {medians[v] / base:.2f}× | {logged.get(v, 0)} |" for v in VARIANTS]
    )
    write_results(
        "cascade",
        result,
        f"# A DELETE cascading to {ROWS:,} rows ({ROUNDS} rounds, MySQL 8.0.31, local, shared 2-core machine)\n\n"
        f"{table}\n\nThe cascade trigger adds {added:.1f} ms to the statement "
        f"({added * 1000 / ROWS:.2f} µs per cascaded row): one INSERT ... SELECT of {ROWS:,} log rows, one ring.\n",
    )
    print(table)
    print(f"cascade trigger adds {added:.1f} ms ({added * 1000 / ROWS:.2f} us per row)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
