"""Benchmark: changes through the deployed local stack, end to end, judged by reconcile.

Rows are written in MySQL 8.0 by plain INSERT statements (STATEMENT_ROWS rows each); from there
everything is the deployed app on the local stack: the capture triggers, lambda_async (the loadable
function handing each ring to the bridge, which invokes the parser on ministack and spends Aurora's
35 ms a call), the fetch queue and the fetcher function, and both sinks. The clock runs from the first
statement until every written row is in OpenSearch and DynamoDB at its version; then a full reconcile of
the table must agree. Beside it, the in-process figure of the same fetch path from
bench/results/fetcher.json (its packed run: bench/bench_fetcher.py), so the two can be read side by side.

    make up                                                       # or let this script run `up`
    BENCH_E2E_ROWS=20000 .venv/bin/python -m bench.bench_end_to_end   # -> bench/results/end_to_end.{json,md}

ministack starts a process per Lambda invocation and runs every function on this shared 2-core
machine, so the figure measures this stack, not AWS's Lambda; it is the ceiling a user of the local
stack sees, and how far the in-process figure is from it.
"""

from __future__ import annotations

import json
import os
import random
import time

import boto3

from bench.harness import (
    AURORA_LAMBDA_ASYNC_MS,
    RESULTS,
    deployed_stack,
    insert_rows,
    lambda_async_bridge,
    write_results,
)
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.reconcile import SinkReaders, reconcile
from fanout.sinks.opensearch import make_client
from local.config import StackEnv
from local.database import source_connection

ROWS = int(os.environ.get("BENCH_E2E_ROWS", "300"))
STATEMENT_ROWS = 50
TIMEOUT_S = 900


def main() -> int:
    env = StackEnv.read() or deployed_stack()
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=env.aws_endpoint_url,
        region_name=env.aws_default_region,
        aws_access_key_id=env.aws_access_key_id,
        aws_secret_access_key=env.aws_secret_access_key,
    )
    opensearch = make_client(env.opensearch_endpoint)
    mappings = default_mappings()
    posts = mappings.get("posts")
    assert posts is not None
    readers = SinkReaders(opensearch, dynamodb, env.dynamodb_table)
    conn = source_connection(env)
    first = random.randrange(3 * 10**9, 4 * 10**9)
    ids = list(range(first, first + ROWS))
    changes = [Change("posts", (("id", k),), "update", 1) for k in ids]
    doc_ids = [opensearch_document_id(posts, c) for c in changes]
    keys = [dynamodb_key(posts, c) for c in changes]
    bridge = lambda_async_bridge()
    bridge.configure(env.parser_function_arn, delay_ms=AURORA_LAMBDA_ASYNC_MS)
    try:
        started = time.monotonic()
        rows = ((key, f"e2e {key}", "body " * 40) for key in ids)
        insert_rows(conn, "INSERT INTO posts (id, title, body, author) VALUES (%s, %s, %s, 'bench')", rows,
                    chunk=STATEMENT_ROWS)  # fmt: skip
        # lambda_async returns once Lambda has accepted the ring, inside the statement: the rings have left
        written = time.monotonic()
        while True:
            opensearch.indices.refresh(index=posts.opensearch.index)
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
        bridge.reset(env.parser_function_arn)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM posts WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))
        conn.close()
    in_process = None
    fetcher = RESULTS / "fetcher.json"
    if fetcher.exists():
        in_process = json.loads(fetcher.read_text())["shapes"]["packed"]["changes_per_s"]
    end_to_end = round(ROWS / (arrived - started), 1)
    result = {
        "rows": ROWS,
        "rows_per_statement": STATEMENT_ROWS,
        "write_s": round(written - started, 2),
        "lambda_async_ms_per_call": AURORA_LAMBDA_ASYNC_MS,
        "end_to_end_s": round(arrived - started, 2),
        "end_to_end_rows_per_s": end_to_end,
        "in_process_packed_changes_per_s": in_process,
        "end_to_end_over_in_process": round(end_to_end / in_process, 3) if in_process else None,
        "reconcile_agrees": check.agrees,
        "reconcile": {sink: {k: v for k, v in t.items() if k != "examples"} for sink, t in tally.items()},
    }
    write_results(
        "end_to_end",
        result,
        "# End to end through the deployed local stack (one run)\n\n"
        f"{ROWS} rows inserted in MySQL 8.0.31, {STATEMENT_ROWS} a statement; triggers, lambda_async (loadable "
        f"function → bridge, {AURORA_LAMBDA_ASYNC_MS} ms a call as Aurora's), parser and fetcher on ministack, both "
        "sinks (`bench/bench_end_to_end.py`).\n\n"
        "| figure | value |\n|---|---|\n"
        f"| writes (and their rings) done after | {result['write_s']} s |\n"
        f"| every row in both sinks after | {result['end_to_end_s']} s |\n"
        f"| **end to end** | **{end_to_end} rows/s** |\n"
        f"| in process, packed (bench/results/fetcher.json) | {in_process} changes/s |\n"
        f"| end to end / in process | {result['end_to_end_over_in_process']} |\n"
        f"| full reconcile of posts afterwards | {'agrees' if check.agrees else 'DISAGREES'} |\n",
    )
    print(json.dumps(result, indent=2))
    return 0 if check.agrees else 1


if __name__ == "__main__":
    raise SystemExit(main())
