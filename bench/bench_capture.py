"""Benchmark: per-row capture against the change log, through the deployed local stack.

Both designs in one run, on the stack `make up` deployed (trigger -> lambda_async loadable function ->
bridge -> parser on ministack -> fetch path -> OpenSearch and DynamoDB):

  per-row     the triggers of V004: one lambda_async call per row, one parser invoke each;
  change log  the newest migration's (V006 onwards): the row is logged in the transaction, one ring per
              statement (none while a drainer works), the rung parser drains the log.

The triggers of each design are installed on the stack's database from the committed
migration files (rendered as the migration runner renders them), every other version's dropped, and the
newest migration's put back at the end. The bridge is told to spend Aurora's published 35 ms in each
call to the parser's ARN (``Control.configure(arn, delay_ms=35)``), inside the statement, as Aurora
does; it serves calls concurrently, as Aurora's sessions each make their own.

For multi-row INSERT, UPDATE and DELETE statements of each size it reports: the
lambda_async calls, the statement's time (and the same statement without triggers, with
@fanout_disable = 1), and the time from COMMIT until both sinks hold every row's new
state. Absolute numbers are this shared 2-core machine and ministack; compare the ratios.

    .venv/bin/python -m bench.bench_capture [--sizes 1,100,1000]   # -> bench/results/capture.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from typing import Any

import boto3

from bench.harness import AURORA_LAMBDA_ASYNC_MS, ROOT, deployed_stack, lambda_async_bridge, write_results
from fanout.capture.migration_scripts import load_migrations, render, split_statements
from fanout.sinks.opensearch import make_client
from local.config import StackEnv
from local.database import source_connection
from local.lambda_async.bridge import Control

DEFAULT_SIZES = (1, 100, 1000)
SETTLE_TIMEOUT_SECONDS = 600
SESSIONS = 8
SESSION_ROWS = 400  # rows per multi-session run
STEADY_RATE = 50.0  # rows/s in all, for the steady run


def install(conn: Any, version: int, arn: str) -> None:
    """Create the triggers of migration ``version`` as the runner would, then drop every other version's
    capture triggers on the benched tables, so exactly one design captures them."""
    [migration] = [m for m in load_migrations(ROOT / "db" / "migrations") if m.version == version]
    with conn.cursor() as cur:
        for statement in split_statements(render(migration.sql, {"parser_function_arn": arn})):
            cur.execute(statement)
        cur.execute(
            "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE() "
            "AND event_object_table IN ('posts', 'tenant_settings') AND trigger_name LIKE 'fanout\\_%%' "
            "AND trigger_name NOT LIKE %s",
            (f"%\\_v{version:03d}",),
        )
        for (name,) in cur.fetchall():
            cur.execute(f"DROP TRIGGER `{name}`")


def latest_version() -> int:
    """The stack's own design: the newest migration, which the post-deploy hook applied last."""
    return max(m.version for m in load_migrations(ROOT / "db" / "migrations"))


# The migration whose triggers each design runs: per-row's last (V004), and the change log's newest.
DESIGNS = {"per-row": 4, "change log": latest_version()}
BRIDGE: Control = lambda_async_bridge()


def calls_so_far() -> int:
    """lambda_async calls made so far: the bridge's count of the calls it served (this stack's alone)."""
    return BRIDGE.ping()


class Sinks:
    def __init__(self, env: StackEnv) -> None:
        self.opensearch = make_client(env.opensearch_endpoint)
        self.dynamodb = boto3.resource(
            "dynamodb",
            endpoint_url=env.aws_endpoint_url,
            region_name=env.aws_default_region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.table = env.dynamodb_table

    def settled(self, keys: list[int], title: str | None) -> bool:
        """Whether both sinks hold every key with ``title`` (``None``: every key deleted)."""
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            docs = self.opensearch.mget(index="posts", body={"ids": [str(k) for k in chunk]})["docs"]
            for doc in docs:
                if title is None and doc.get("found"):
                    return False
                if title is not None and (not doc.get("found") or doc["_source"].get("title") != title):
                    return False
            answer = self.dynamodb.batch_get_item(
                RequestItems={self.table: {"Keys": [{"pk": f"posts#{k}"} for k in chunk], "ConsistentRead": True}}
            )
            if answer.get("UnprocessedKeys"):
                return False
            items = {i["pk"]: i for i in answer["Responses"].get(self.table, [])}
            for key in chunk:
                entry = items.get(f"posts#{key}")
                if title is None and not (entry and entry.get("_deleted")):
                    return False
                if title is not None and (not entry or entry.get("title") != title or entry.get("_deleted")):
                    return False
        return True

    def wait(self, keys: list[int], title: str | None) -> float:
        started = time.monotonic()
        while not self.settled(keys, title):
            if time.monotonic() - started > SETTLE_TIMEOUT_SECONDS:
                raise RuntimeError(f"the sinks did not settle within {SETTLE_TIMEOUT_SECONDS}s")
            time.sleep(0.2)
        return time.monotonic() - started


def timed_statement(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> tuple[float, int]:
    """(seconds for the statement and its COMMIT, lastrowid)."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(sql, args)
        last = int(cur.lastrowid or 0)
    conn.commit()
    return time.perf_counter() - started, last


def insert_sql(n: int) -> str:
    values = ", ".join(["(%s, 'bench body', 'bench')"] * n)
    return f"INSERT INTO posts (title, body, author) VALUES {values}"  # noqa: S608 - placeholders only


def run_size(conn: Any, sinks: Sinks, n: int) -> dict[str, Any]:
    """INSERT, UPDATE and DELETE of ``n`` rows under the installed triggers, each settled in both sinks."""
    out: dict[str, Any] = {}
    title = f"bench {uuid.uuid4().hex[:8]}"
    before = calls_so_far()
    seconds, first = timed_statement(conn, insert_sql(n), tuple([title] * n))
    keys = list(range(first, first + n))
    out["insert"] = {
        "calls": calls_so_far() - before,
        "statement_s": seconds,
        "to_sinks_s": sinks.wait(keys, title),
    }
    title2 = title + " edited"
    before = calls_so_far()
    seconds, _ = timed_statement(conn, "UPDATE posts SET title = %s WHERE title = %s", (title2, title))
    out["update"] = {
        "calls": calls_so_far() - before,
        "statement_s": seconds,
        "to_sinks_s": sinks.wait(keys, title2),
    }
    before = calls_so_far()
    seconds, _ = timed_statement(conn, "DELETE FROM posts WHERE title = %s", (title2,))
    out["delete"] = {"calls": calls_so_far() - before, "statement_s": seconds, "to_sinks_s": sinks.wait(keys, None)}
    return out


def arrivals(sinks: Sinks, committed: dict[int, float], title: str) -> dict[int, float]:
    """When each key was first seen in both sinks (polled every 0.2 s, 100 keys per request)."""
    seen: dict[int, float] = {}
    started = time.monotonic()
    while len(seen) < len(committed):
        if time.monotonic() - started > SETTLE_TIMEOUT_SECONDS:
            raise RuntimeError(f"the sinks did not settle within {SETTLE_TIMEOUT_SECONDS}s")
        now = time.time()
        pending = [k for k in committed if k not in seen]
        for start in range(0, len(pending), 100):
            seen.update({k: now for k in _both(sinks, pending[start : start + 100], title)})
        time.sleep(0.2)
    return seen


def _both(sinks: Sinks, keys: list[int], title: str) -> set[int]:
    docs = sinks.opensearch.mget(index="posts", body={"ids": [str(k) for k in keys]})["docs"]
    in_search = {int(d["_id"]) for d in docs if d.get("found") and d["_source"].get("title") == title}
    answer = sinks.dynamodb.batch_get_item(
        RequestItems={sinks.table: {"Keys": [{"pk": f"posts#{k}"} for k in keys], "ConsistentRead": True}}
    )
    in_items = {
        int(i["pk"].split("#", 1)[1])
        for i in answer["Responses"].get(sinks.table, [])
        if i.get("title") == title and not i.get("_deleted")
    }
    return in_search & in_items


def sessions_run(env: StackEnv, sinks: Sinks, rows: int, rate: float | None) -> dict[str, Any]:
    """Single-row autocommit INSERTs from SESSIONS sessions, at ``rate`` rows/s in all (None: flat out)."""
    title = f"bench sessions {uuid.uuid4().hex[:8]}"
    committed: dict[int, float] = {}
    lock = threading.Lock()
    per_session = rows // SESSIONS
    conns = [source_connection(env) for _ in range(SESSIONS)]
    before = calls_so_far()
    start = time.monotonic()

    def write(index: int, conn: Any) -> None:
        for n in range(per_session):
            if rate is not None:  # session i writes at rate/SESSIONS, offset so the sessions interleave
                due = start + (n * SESSIONS + index) / rate
                time.sleep(max(0.0, due - time.monotonic()))
            with conn.cursor() as cur:
                cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'bench')", (title,))
                key = int(cur.lastrowid)
            with lock:
                committed[key] = time.time()

    threads = [threading.Thread(target=write, args=(i, c)) for i, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = calls_so_far() - before
    seen = arrivals(sinks, committed, title)
    for conn in conns:
        with conn.cursor() as cur:
            cur.execute("SET @fanout_disable = 1")
            cur.execute("DELETE FROM posts WHERE title = %s", (title,))
        conn.close()
    lags = sorted(seen[k] - committed[k] for k in committed)

    def pct(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))]

    return {
        "rows": len(committed),
        "calls_per_1000_rows": round(calls * 1000 / len(committed), 1),
        "commit_to_both_sinks_s": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)},
    }


def untriggered(conn: Any, n: int) -> dict[str, float]:
    """The same statements with the kill switch on: what the application pays without capture."""
    title = f"bench plain {uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute("SET @fanout_disable = 1")
    try:
        result = {
            "insert": timed_statement(conn, insert_sql(n), tuple([title] * n))[0],
            "update": timed_statement(conn, "UPDATE posts SET title = %s WHERE title = %s", (title + "x", title))[0],
            "delete": timed_statement(conn, "DELETE FROM posts WHERE title = %s", (title + "x",))[0],
        }
    finally:
        with conn.cursor() as cur:
            cur.execute("SET @fanout_disable = NULL")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="rows per statement")
    parser.add_argument("--session-rows", type=int, default=SESSION_ROWS, help="rows per multi-session run (0: none)")
    parser.add_argument("--designs", default=",".join(DESIGNS), help="which designs to run (default: both)")
    parser.add_argument("--name", default="capture", help="results file name: bench/results/<name>.{json,md}")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = StackEnv.read() or deployed_stack()
    conn = source_connection(env, autocommit=False)
    sinks = Sinks(env)
    results: dict[str, Any] = {
        "lambda_async_delay_ms": AURORA_LAMBDA_ASYNC_MS, "sizes": sizes, "designs": {}, "no_triggers": {},
    }  # fmt: skip
    BRIDGE.configure(env.parser_function_arn, delay_ms=AURORA_LAMBDA_ASYNC_MS)
    try:
        for n in sizes:
            results["no_triggers"][str(n)] = untriggered(conn, n)
        for design, version in DESIGNS.items():
            if design not in args.designs.split(","):
                continue
            install(conn, version, env.parser_function_arn)
            run_size(conn, sinks, 1)  # warm-up, not kept: the first invokes after a deploy start cold
            results["designs"][design] = {}
            for n in sizes:
                results["designs"][design][str(n)] = run_size(conn, sinks, n)
                print(design, n, json.dumps(results["designs"][design][str(n)]), flush=True)
            if args.session_rows:
                for name, rate in (("steady", STEADY_RATE), ("burst", None)):
                    outcome = sessions_run(env, sinks, args.session_rows, rate)
                    results["designs"][design][f"sessions {name}"] = outcome
                    print(design, name, json.dumps(outcome), flush=True)
    finally:
        install(conn, latest_version(), env.parser_function_arn)  # the stack's own design, whatever happened
        conn.close()
        BRIDGE.reset(env.parser_function_arn)
    write(results, args.name)
    return 0


def write(results: dict[str, Any], name: str) -> None:
    if len(results["designs"]) < len(DESIGNS):
        write_results(name, results, f"# Capture: {', '.join(results['designs'])} alone; see {name}.json\n")
        return  # one design alone: the figures are in the JSON, there is nothing to put side by side
    per_row, log = results["designs"]["per-row"], results["designs"]["change log"]
    lines = [
        "# Capture: per-row lambda_async vs the change log (deployed local stack on MySQL 8.0.31, lambda_async at "
        f"{AURORA_LAMBDA_ASYNC_MS} ms a call)",
        "",
        "| statement | rows | calls per-row | calls change log | statement s per-row | statement s change log "
        "| × no triggers per-row | × no triggers change log | COMMIT→both sinks s per-row | change log | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in results["sizes"]:
        for op in ("insert", "update", "delete"):
            a, b = per_row[str(n)][op], log[str(n)][op]
            plain = results["no_triggers"][str(n)][op]
            lines.append(
                f"| {op.upper()} | {n} | {a['calls']} | {b['calls']} | {a['statement_s']:.3f} | {b['statement_s']:.3f} "
                f"| {a['statement_s'] / plain:.1f}× | {b['statement_s'] / plain:.1f}× "
                f"| {a['to_sinks_s']:.1f} | {b['to_sinks_s']:.1f} "
                f"| {a['to_sinks_s'] / max(b['to_sinks_s'], 1e-3):.1f}× |"
            )
    if "sessions burst" in per_row:
        lines += [
            "",
            f"{SESSIONS} sessions, single-row autocommit INSERTs ({per_row['sessions burst']['rows']} rows a run):",
            "",
            "| run | calls / 1,000 rows per-row | change log | p50 / p95 / p99 COMMIT→both sinks s per-row "
            "| change log |",
            "|---|---|---|---|---|",
        ]
        for run in ("steady", "burst"):
            a, b = per_row[f"sessions {run}"], log[f"sessions {run}"]
            la, lb = a["commit_to_both_sinks_s"], b["commit_to_both_sinks_s"]
            label = f"steady {STEADY_RATE:g}/s" if run == "steady" else "as fast as they go"
            lines.append(
                f"| {label} | {a['calls_per_1000_rows']:g} | {b['calls_per_1000_rows']:g} "
                f"| {la['p50']:.2f} / {la['p95']:.2f} / {la['p99']:.2f} "
                f"| {lb['p50']:.2f} / {lb['p95']:.2f} / {lb['p99']:.2f} |"
            )
    lines += [
        "",
        "calls: lambda_async calls the statement made. statement s: the statement and its COMMIT, with the bridge",
        "spending the delay in each call. × no triggers: against the same statement with @fanout_disable = 1.",
        "COMMIT→both sinks: until OpenSearch and DynamoDB both hold every row's new state (polled every 0.2 s).",
        "Ratio: per-row over change log. ministack starts a process per Lambda invoke, which weighs on both designs.",
    ]
    write_results(name, results, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
