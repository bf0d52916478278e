"""Benchmark: one drainer hand-off in process, where its time goes (cProfile), against MySQL 8.0 and ministack SQS.

A throwaway schema is migrated as the post-deploy hook does (the capture triggers, the change log); each round
inserts BATCH posts rows in statements of 50 (so the change log holds the payloads the triggers write), then the
drainer claims them in one batch and hands them off exactly as the parser does (fanout.capture.change_log: parse
each payload into changes, coalesce, stamp, pack and SendMessageBatch to a throwaway queue on ministack, delete the
claimed rows, commit). Each part is timed on its own; the rows' DELETE is measured in both forms in one run,
alternating round by round: one statement a row (``executemany``, the drainer before) and the claimed ids in
statements of DELETE_CHUNK (the drainer now). A further round is profiled (cProfile, standard library) and its top
functions written to bench/results/handoff_profile.txt. The log lines the hand-off writes go to /dev/null, as a
Lambda's stdout costs the parser the write, not the reading.

    .venv/bin/python -m bench.bench_handoff      # -> bench/results/handoff.{json,md}, handoff_profile.txt
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3

from bench.harness import ROOT, lambda_async_bridge, local_services, write_results
from fanout.capture.change_log import DEFAULT_BATCH_ROWS, DELETE_CHUNK, coalesce, delete_claimed, parse_rows
from fanout.capture.migrations import MigrationRunner
from fanout.capture.names import CHANGE_LOG_TABLE
from fanout.config import DatabaseSettings
from fanout.model.change import Stage
from fanout.model.mapping import Mappings, default_mappings
from fanout.observability import record_accepted
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.source.connection import connect
from local.config import LocalConfig
from local.database import create_database, drop_database

BATCH = DEFAULT_BATCH_ROWS  # the drainer's full claim
ROUNDS = int(os.environ.get("BENCH_HANDOFF_ROUNDS", "6"))  # per delete form
STATEMENT_ROWS = 50


def per_row_delete(conn: Any, ids: Sequence[int]) -> None:
    """The drainer's DELETE before: one statement a row, by primary key."""
    with conn.cursor() as cur:
        cur.executemany(f"DELETE FROM {CHANGE_LOG_TABLE} WHERE id = %s", [(i,) for i in ids])  # noqa: S608


DELETES: dict[str, Callable[[Any, Sequence[int]], None]] = {
    "one a row": per_row_delete,
    f"IN, {DELETE_CHUNK} a statement": delete_claimed,
}


@contextmanager
def migrated_schema(cfg: LocalConfig) -> Iterator[Any]:
    """A throwaway schema with the demo tables and the project's migrations; its rings are only remembered."""
    name = create_database(cfg, "fanout_bench_handoff")
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, name, cfg.db_user, cfg.db_password)
    arn = f"arn:aws:lambda:{cfg.region}:000000000000:function:bench-handoff-{name}"
    lambda_async_bridge(cfg).configure(arn, deliver=False)
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            for statement in (ROOT / "local" / "demo_schema.sql").read_text().split(";"):
                if statement.strip():
                    cur.execute(statement)
        MigrationRunner(lambda: connect(settings), ROOT / "db" / "migrations", {"parser_function_arn": arn},
                        applied_by="bench").migrate()  # fmt: skip
        yield conn
    finally:
        conn.close()
        lambda_async_bridge(cfg).reset(arn)
        drop_database(cfg, name)


def log_rows(conn: Any) -> None:
    """BATCH rows in the change log, written by the capture triggers of multi-row INSERTs."""
    values = ", ".join(["(%s, %s, 'bench')"] * STATEMENT_ROWS)
    with conn.cursor() as cur:
        for _ in range(BATCH // STATEMENT_ROWS):
            params = [p for i in range(STATEMENT_ROWS) for p in (f"post {i}", "body " * 40)]
            cur.execute(f"INSERT INTO posts (title, body, author) VALUES {values}", params)  # noqa: S608


def hand_off(conn: Any, mappings: Mappings, queue: QueueForwarder, delete: Callable[[Any, Sequence[int]], None],
             parts: dict[str, float]) -> int:  # fmt: skip
    """One claim of BATCH rows handed off as the drainer does, each part timed into ``parts`` (seconds)."""
    conn.begin()
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, payload FROM {CHANGE_LOG_TABLE} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",  # noqa: S608
                    (BATCH,))  # fmt: skip
        rows = [(int(i), str(p)) for i, p in cur.fetchall()]
    t1 = time.perf_counter()
    changes, _ = parse_rows(rows, mappings, lambda *_: None, "bench")
    t2 = time.perf_counter()
    drained_us = time.time_ns() // 1000
    merged = [change.stamped(Stage.DRAINED, drained_us) for change in coalesce(changes)]
    t3 = time.perf_counter()
    queue.send(merged)
    t4a = time.perf_counter()
    record_accepted(merged, "bench")
    t4 = time.perf_counter()
    delete(conn, [row_id for row_id, _ in rows])
    t5 = time.perf_counter()
    conn.commit()
    t6 = time.perf_counter()
    timed = {"claim": t1 - t0, "parse": t2 - t1, "coalesce": t3 - t2, "pack+send": t4a - t3,
             "accepted lines": t4 - t4a, "delete": t5 - t4, "commit": t6 - t5, "hand-off": t6 - t1}  # fmt: skip
    parts.update(timed)
    return len(rows)


def main() -> int:
    cfg = local_services()
    sqs = boto3.client("sqs", endpoint_url=cfg.aws_endpoint, region_name=cfg.region,
                       aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    queue_url = sqs.create_queue(QueueName=f"bench-handoff-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    mappings = default_mappings()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in DELETES}
    profile = cProfile.Profile()
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the drainer's log lines, written as in Lambda
    try:
        with migrated_schema(cfg) as conn:
            queue = QueueForwarder(sqs, queue_url)
            log_rows(conn)
            hand_off(conn, mappings, queue, delete_claimed, {})  # warm up: pools, the table's pages
            for _ in range(ROUNDS):  # alternating, so drift on a shared machine hits both forms
                for name, delete in DELETES.items():
                    log_rows(conn)
                    parts: dict[str, float] = {}
                    assert hand_off(conn, mappings, queue, delete, parts) == BATCH
                    runs[name].append(parts)
            log_rows(conn)
            profile.enable()  # a round of its own: the profiler's overhead stays out of the figures
            hand_off(conn, mappings, queue, delete_claimed, {})
            profile.disable()
    finally:
        sys.stdout.close()
        sys.stdout = sys.__stdout__
        sqs.delete_queue(QueueUrl=queue_url)
    median = {name: {part: round(statistics.median(r[part] for r in rs) * 1000, 1) for part in rs[0]}
              for name, rs in runs.items()}  # fmt: skip
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    (ROOT / "bench" / "results" / "handoff_profile.txt").write_text(text.getvalue())
    before, after = (median[name] for name in DELETES)
    lines = [
        f"# One drainer hand-off of {BATCH} change-log rows in process (one run, median of {ROUNDS} each)\n",
        f"MySQL 8.0.31 and ministack SQS; posts rows inserted {STATEMENT_ROWS} a statement, their log rows claimed "
        f"in one batch (`.venv/bin/python -m bench.bench_handoff`). ms per hand-off; the two DELETE forms "
        "alternate round by round. The profile of a further round: bench/results/handoff_profile.txt.\n",
        "| part (ms) | " + " | ".join(f"DELETE {name}" for name in DELETES) + " |",
        "|---|" + "---|" * len(DELETES),
        *(f"| {part} | " + " | ".join(str(median[name][part]) for name in DELETES) + " |" for part in before),
        f"| **hand-off after / before** | | {round(after['hand-off'] / before['hand-off'], 3)} |",
        f"| **delete+commit after / before** | | "
        f"{round((after['delete'] + after['commit']) / (before['delete'] + before['commit']), 3)} |",
    ]
    write_results("handoff", {"batch": BATCH, "rounds": ROUNDS, "median_ms": median}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
