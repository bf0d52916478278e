"""Benchmark: changes through the deployed local stack, end to end, judged by reconcile.

Rows are written in MariaDB by plain INSERT statements (STATEMENT_ROWS rows each); from there
everything is the deployed app on the local stack: the capture triggers, the lambda_async shim,
local/bridge.py invoking the parser on ministack, the fetch queue and the fetcher function, and
both sinks. The clock runs from the first statement until every written row is in OpenSearch and
DynamoDB at its version; then a full reconcile of the table must agree. Beside it, the in-process
figure of the same design from bench/results/throughput.json (its "queued" uniform run), so the two
can be read side by side.

    make up                                                     # or let this script run `up`
    BENCH_E2E_ROWS=300 .venv/bin/python -m bench.bench_end_to_end   # -> bench/results/end_to_end.{json,md}

ministack starts a process per Lambda invocation and runs every function on this shared 2-core
machine, so the figure measures this stack, not AWS's Lambda; it is the ceiling a user of the local
stack sees, and how far the in-process figure is from it.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.reconcile import SinkReaders, reconcile
from fanout.sinks.opensearch import make_client
from local.stack import read_stack_env, source_connection, up

ROOT = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("BENCH_E2E_ROWS", "300"))
STATEMENT_ROWS = 50
TIMEOUT_S = 900
OUT = ROOT / "bench" / "results"


def main() -> int:
    env = read_stack_env() or up()
    import boto3

    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    opensearch = make_client(env["OPENSEARCH_ENDPOINT"])
    mappings = default_mappings()
    posts = mappings.get("posts")
    assert posts is not None
    readers = SinkReaders(opensearch, dynamodb, env["DYNAMODB_TABLE"])
    conn = source_connection(env)
    first = random.randrange(3 * 10**9, 4 * 10**9)
    ids = list(range(first, first + ROWS))
    changes = [Change("posts", (("id", k),), "update", 1) for k in ids]
    doc_ids = [opensearch_document_id(posts, c) for c in changes]
    keys = [dynamodb_key(posts, c) for c in changes]
    try:
        started = time.monotonic()
        with conn.cursor() as cur:
            for low in range(ids[0], ids[-1] + 1, STATEMENT_ROWS):
                high = min(low + STATEMENT_ROWS - 1, ids[-1])
                cur.execute(
                    "INSERT INTO posts (id, title, body, author) SELECT seq, CONCAT('e2e ', seq), "  # noqa: S608
                    f"REPEAT('body ', 40), 'bench' FROM seq_{int(low)}_to_{int(high)}"
                )
        written = time.monotonic()
        drained: float | None = None  # when the bridge had handed every trigger call to Lambda
        while True:
            if drained is None:
                with conn.cursor() as cur:
                    cur.execute("SELECT COUNT(*) FROM fanout_lambda_async_outbox WHERE last_error IS NULL")
                    if int(cur.fetchone()[0]) == 0:
                        drained = time.monotonic()
            opensearch.indices.refresh(index=posts.opensearch_index)
            in_opensearch = len(readers.documents(posts, doc_ids))
            in_dynamodb = sum(1 for item in readers.items(posts, keys) if not item.get("_deleted"))
            if in_opensearch == in_dynamodb == ROWS:
                break
            if time.monotonic() - started > TIMEOUT_S:
                raise SystemExit(f"after {TIMEOUT_S}s: {in_opensearch} rows in OpenSearch, {in_dynamodb} in DynamoDB")
            time.sleep(0.25)
        arrived = time.monotonic()
        check = reconcile(conn, Mappings({"posts": posts}), readers, tables=["posts"])
        tally = {sink: vars(t) for sink, t in check.tables["posts"].items()}
    finally:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM posts WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))
        conn.close()
    in_process = None
    throughput = OUT / "throughput.json"
    if throughput.exists():
        in_process = json.loads(throughput.read_text())["workloads"]["uniform"]["queued"]["changes_per_s"]
    end_to_end = round(ROWS / (arrived - started), 1)
    result = {
        "rows": ROWS,
        "rows_per_statement": STATEMENT_ROWS,
        "write_s": round(written - started, 2),
        "bridge_drained_s": round((drained or arrived) - started, 2),
        "end_to_end_s": round(arrived - started, 2),
        "end_to_end_rows_per_s": end_to_end,
        "in_process_queued_changes_per_s": in_process,
        "end_to_end_over_in_process": round(end_to_end / in_process, 3) if in_process else None,
        "reconcile_agrees": check.agrees,
        "reconcile": {sink: {k: v for k, v in t.items() if k != "examples"} for sink, t in tally.items()},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "end_to_end.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "end_to_end.md").write_text(
        "# End to end through the deployed local stack (one run)\n\n"
        f"{ROWS} rows inserted in MariaDB, {STATEMENT_ROWS} a statement; triggers, shim, bridge, parser and "
        "fetcher on ministack, both sinks (`bench/bench_end_to_end.py`).\n\n"
        "| figure | value |\n|---|---|\n"
        f"| writes done after | {result['write_s']} s |\n"
        f"| the bridge had invoked the parser for every row after | {result['bridge_drained_s']} s |\n"
        f"| every row in both sinks after | {result['end_to_end_s']} s |\n"
        f"| **end to end** | **{end_to_end} rows/s** |\n"
        f"| in process, queued (bench/results/throughput.json, uniform) | {in_process} changes/s |\n"
        f"| end to end / in process | {result['end_to_end_over_in_process']} |\n"
        f"| full reconcile of posts afterwards | {'agrees' if check.agrees else 'DISAGREES'} |\n"
    )
    print(json.dumps(result, indent=2))
    return 0 if check.agrees else 1


if __name__ == "__main__":
    raise SystemExit(main())
