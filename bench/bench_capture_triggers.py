"""Benchmark: what the protected capture trigger adds to the application's own INSERT.

In one process run, on the local MySQL 8.0 with the lambda_async loadable function, it times single-row
autocommit INSERTs (what an application does) into identical tables that differ only
in their AFTER INSERT trigger:
  (a) no trigger;
  (b) the V001 trigger: lambda_async only, no protection;
  (c) the generated trigger (V006 onwards: change log, one ring per statement), ringing;
  (d) the generated trigger with the session's kill switch on (@fanout_disable = 1);
  (e) the generated trigger with lambda_async failing (what Aurora would do while Lambda
      is unreachable): the change is still logged.
and reports each as a ratio to (a) and (c) to (b). Each lambda_async call is a loopback round trip to the
bridge, told to keep the calls to the bench's ARN without invoking Lambda (and, for (e), to fail them), so this
measures the trigger's own SQL and a local hand-off, not Aurora's network call to Lambda (bench_capture.py adds
that). Absolute numbers depend on this shared 2-core machine; the ratios are the result.

    make bench              # writes bench/results/capture_triggers.{json,md}
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from time import perf_counter

from bench.harness import lambda_async_bridge, local_services, write_results
from fanout.capture.migration_scripts import render, split_statements
from fanout.capture.trigger_sql import capture_trigger
from fanout.capture.triggers import CHANGE_LOG_TABLE_SQL
from fanout.config import DatabaseSettings
from fanout.model.mapping import parse_mappings
from fanout.source.connection import connect
from local.database import create_database, drop_database

ROWS = 2000
ROUNDS = 5
ARN = "arn:aws:lambda:us-east-1:123456789012:function:fanout-bench-parser"
TABLE_SQL = """\
CREATE TABLE `{name}` (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title VARCHAR(200) NOT NULL,
    body TEXT NOT NULL,
    author VARCHAR(100) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"""
V001_INSERT_TRIGGER = """\
CREATE TRIGGER {name}_v001 AFTER INSERT ON `{name}` FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '{arn}',
        JSON_OBJECT(
            'v', 1, 'action', 'insert', 'table', '{name}',
            'pk', JSON_OBJECT('id', NEW.id),
            'ts', UNIX_TIMESTAMP(SYSDATE(6))
        )
    ) INTO @fanout_invoke_result;
END"""


def main() -> int:
    cfg = local_services()
    bridge = lambda_async_bridge(cfg)
    db_name = create_database(cfg)
    conn = connect(DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password))
    try:
        with conn.cursor() as cur:
            cur.execute(CHANGE_LOG_TABLE_SQL)
            for name in ("plain", "v001", "generated"):
                cur.execute(TABLE_SQL.format(name=name))
            cur.execute(V001_INSERT_TRIGGER.format(name="v001", arn=ARN))
            mapping = parse_mappings({"tables": {"generated": {"primary_key": [{"column": "id"}]}}}).tables["generated"]
            [trigger] = split_statements(render(capture_trigger(mapping, "insert", 6), {"parser_function_arn": ARN}))
            cur.execute(trigger)

        def inserts(table: str, session_sql: str = "", ring_fails: bool = False) -> Callable[[], None]:
            def run() -> None:
                if ring_fails:
                    bridge.configure(ARN, fail="ServiceException: unreachable (bench)")
                try:
                    with conn.cursor() as cur:
                        if session_sql:
                            cur.execute(session_sql)
                        statement = f"INSERT INTO `{table}` (title, body, author) VALUES (%s, 'body', 'bench')"  # noqa: S608
                        for i in range(ROWS):
                            cur.execute(statement, (i,))
                        cur.execute("SET @fanout_disable = NULL")
                finally:
                    bridge.configure(ARN, deliver=False)

            return run

        variants = {
            "no trigger": inserts("plain"),
            "V001 trigger": inserts("v001"),
            "generated trigger": inserts("generated"),
            "generated, kill switch on": inserts("generated", "SET @fanout_disable = 1"),
            "generated, ring failing": inserts("generated", ring_fails=True),
        }
        bridge.configure(ARN, deliver=False)  # no Lambda behind the bench's ARN: the bridge keeps the calls
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for run in variants.values():  # warm-up
            run()
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits every variant
            for name, run in variants.items():
                started = perf_counter()
                run()
                timings[name].append((perf_counter() - started) / ROWS * 1000)
            with conn.cursor() as cur:  # keep the change log from growing between rounds (not timed)
                cur.execute("TRUNCATE TABLE fanout_change_log")
    finally:
        conn.close()
        drop_database(cfg, db_name)
        bridge.reset(ARN)

    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians["no trigger"]
    ratios = {name: round(value / base, 2) for name, value in medians.items()}
    generated_over_v001 = round(medians["generated trigger"] / medians["V001 trigger"], 2)
    result = {
        "rows": ROWS,
        "rounds": ROUNDS,
        "ms_per_insert": timings,
        "median_ms_per_insert": medians,
        "ratio_to_no_trigger": ratios,
        "generated_over_v001": generated_over_v001,
    }
    table_md = "\n".join(
        ["| AFTER INSERT trigger | median ms / insert | × no trigger |", "|---|---|---|"]
        + [f"| {name} | {medians[name]:.3f} | {ratios[name]:.2f}× |" for name in medians]
        + [f"| **generated / V001** | | **{generated_over_v001:.2f}×** |"]
    )
    write_results(
        "capture_triggers",
        result,
        f"# Capture trigger cost on the application's INSERT ({ROWS} rows × {ROUNDS} rounds, MySQL 8.0.31, "
        "lambda_async handed to the local bridge)\n\n"
        f"{table_md}\n",
    )
    print(table_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
