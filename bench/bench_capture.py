"""Benchmark: per-row capture against the change log, through the deployed local stack.

Both designs in one run, on the stack `make up` deployed (trigger -> lambda_async shim ->
bridge -> parser on ministack -> fetch path -> OpenSearch and DynamoDB):

  per-row     the triggers of V004: one lambda_async call per row, one parser invoke each;
  change log  the triggers of V006: the row is logged in the transaction, one ring per
              statement (none while a drainer works), the rung parser drains the log.

The triggers of each design are installed on the stack's database from the committed
migration files (rendered as the migration runner renders them), and V006's put back at
the end. The shim spends ``SHIM_DELAY_MS`` (35 ms, Aurora's published figure) in each
call, inside the statement, as Aurora does; the bridge delivers calls concurrently.

For multi-row INSERT, UPDATE and DELETE statements of each size it reports: the
lambda_async calls, the statement's time (and the same statement without triggers, with
@fanout_disable = 1), and the time from COMMIT until both sinks hold every row's new
state. Absolute numbers are this shared 2-core machine and ministack; compare the ratios.

    .venv/bin/python bench/bench_capture.py [--sizes 1,100,1000]   # -> bench/results/capture.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from fanout.migrations import load_migrations, render, split_statements  # noqa: E402
from local.stack import source_connection  # noqa: E402

SHIM_DELAY_MS = 35
DEFAULT_SIZES = (1, 100, 1000)
SETTLE_TIMEOUT_SECONDS = 600
DESIGNS = {"per-row": 4, "change log": 6}  # the migration whose triggers each design runs
OUTBOX = "fanout_lambda_async_outbox"


def stack_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (ROOT / ".local" / "stack.env").read_text().splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            env[name] = value
    return env


def install(conn: Any, version: int, arn: str) -> None:
    """Create the triggers of migration ``version`` (and drop the other design's), as the runner would."""
    [migration] = [m for m in load_migrations(ROOT / "db" / "migrations") if m.version == version]
    with conn.cursor() as cur:
        for statement in split_statements(render(migration.sql, {"parser_function_arn": arn})):
            cur.execute(statement)
        other = 6 if version == 4 else 4
        for table in ("posts", "tenant_settings"):
            for action in ("insert", "update", "delete"):
                cur.execute(f"DROP TRIGGER IF EXISTS fanout_{table}_after_{action}_v{other:03d}")


def calls_so_far(conn: Any) -> int:
    """lambda_async calls made so far: the shim's outbox counter (the bridge deletes delivered rows)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (OUTBOX,),
        )
        return int(cur.fetchone()[0] or 1)


class Sinks:
    def __init__(self, env: dict[str, str]) -> None:
        import boto3

        from fanout.sinks.opensearch_sink import make_client

        self.opensearch = make_client(env["OPENSEARCH_ENDPOINT"])
        self.dynamodb = boto3.resource(
            "dynamodb",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.table = env["DYNAMODB_TABLE"]

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
    before = calls_so_far(conn)
    seconds, first = timed_statement(conn, insert_sql(n), tuple([title] * n))
    keys = list(range(first, first + n))
    out["insert"] = {
        "calls": calls_so_far(conn) - before,
        "statement_s": seconds,
        "to_sinks_s": sinks.wait(keys, title),
    }
    title2 = title + " edited"
    before = calls_so_far(conn)
    seconds, _ = timed_statement(conn, "UPDATE posts SET title = %s WHERE title = %s", (title2, title))
    out["update"] = {
        "calls": calls_so_far(conn) - before,
        "statement_s": seconds,
        "to_sinks_s": sinks.wait(keys, title2),
    }
    before = calls_so_far(conn)
    seconds, _ = timed_statement(conn, "DELETE FROM posts WHERE title = %s", (title2,))
    out["delete"] = {"calls": calls_so_far(conn) - before, "statement_s": seconds, "to_sinks_s": sinks.wait(keys, None)}
    return out


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
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = stack_env()
    conn = source_connection(env, autocommit=False)
    sinks = Sinks(env)
    results: dict[str, Any] = {"shim_delay_ms": SHIM_DELAY_MS, "sizes": sizes, "designs": {}, "no_triggers": {}}
    with conn.cursor() as cur:
        cur.execute("SET @fanout_shim_delay_ms = %s", (SHIM_DELAY_MS,))
    try:
        for n in sizes:
            results["no_triggers"][str(n)] = untriggered(conn, n)
        for design, version in DESIGNS.items():
            install(conn, version, env["PARSER_FUNCTION_ARN"])
            results["designs"][design] = {}
            for n in sizes:
                results["designs"][design][str(n)] = run_size(conn, sinks, n)
                print(design, n, json.dumps(results["designs"][design][str(n)]), flush=True)
    finally:
        install(conn, 6, env["PARSER_FUNCTION_ARN"])  # the stack's own design, whatever happened
        conn.close()
    write(results)
    return 0


def write(results: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "capture.json").write_text(json.dumps(results, indent=2) + "\n")
    per_row, log = results["designs"]["per-row"], results["designs"]["change log"]
    lines = [
        f"# Capture: per-row lambda_async vs the change log (deployed local stack, shim at {SHIM_DELAY_MS} ms a call)",
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
    lines += [
        "",
        "calls: lambda_async calls the statement made. statement s: the statement and its COMMIT, with the shim",
        "spending the delay in each call. × no triggers: against the same statement with @fanout_disable = 1.",
        "COMMIT→both sinks: until OpenSearch and DynamoDB both hold every row's new state (polled every 0.2 s).",
        "Ratio: per-row over change log. ministack starts a process per Lambda invoke, which weighs on both designs.",
    ]
    (out / "capture.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
