"""Benchmark: changes through the deployed local stack, end to end, judged by reconcile, beside the in-process
figure of the same run.

Rows are written in MySQL 8.0 by plain INSERT statements (STATEMENT_ROWS rows each); from there
everything is the deployed app on the local stack: the capture triggers, lambda_async (the loadable
function handing each ring to the bridge, which invokes the parser on ministack and spends Aurora's
35 ms a call), the fetch queue and the fetcher function, and both sinks. The clock runs from the first
statement until every written row is in OpenSearch and DynamoDB at its version (known by the change log and the
fetch queue going empty, then confirmed by one read of both sinks: WAIT); then a full reconcile of the table must
agree. Before it, WARM_UP_ROWS rows go the same way (and their deletes), so that the functions
are warm, as a running stack's are.

The in-process figure is measured in the same run, just before and just after the deployed one, on as many
rows of the same shape (bench.bench_fetcher.packed_in_process: the fetcher's entry applying the packed messages
the parser's forwarder makes, FetchBatchSize an invocation, on the same MySQL, OpenSearch, ministack and event bus); the
ratio is the deployed figure over the mean of the two, so drift on the shared machine hits both sides.

Where the time went comes from the functions' own log lines of the run (CloudWatch Logs on ministack): the
fetcher's batch lines (invocations, messages, each change's stage times: ring, drain, hand-off, queue, each
sink), the parser's ``change log drained`` lines (drains, batches, rows claimed, time in hand-offs). SQS requests
per 1,000 changes count the parser's SendMessageBatch requests (a drained batch of up to 256 KB of changes is one
message and one request), and the event source's ReceiveMessage and DeleteMessageBatch per fetcher invocation.

    make up                                                       # or let this script run `up`
    BENCH_E2E_ROWS=20000 .venv/bin/python -m bench.bench_end_to_end   # -> bench/results/end_to_end.{json,md}

ministack starts a process per Lambda invocation and runs every function on this shared 2-core machine, so the
figure measures this stack, not AWS's Lambda; it is the ceiling a user of the local stack sees, and how far the
in-process figure is from it.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from typing import Any

import boto3
from opensearchpy import NotFoundError

from bench.bench_fetcher import FETCH_BATCH, packed_in_process
from bench.cpu_share import measure, snapshot
from bench.cpu_share import table as cpu_table
from bench.harness import (
    AURORA_LAMBDA_ASYNC_MS,
    deployed_stack,
    insert_rows,
    lambda_async_bridge,
    log_lines,
    write_results,
)
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping, default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.reconcile import SinkReaders, reconcile
from fanout.pipeline.stage_times import percentile
from fanout.sinks.opensearch import make_client
from local.config import LocalConfig, StackEnv
from local.database import source_connection
from tests.support.aws import aws_client
from tests.support.burst import backlog, watch_drain
from tests.support.e2e import Stack

ROWS = int(os.environ.get("BENCH_E2E_ROWS", "300"))
STATEMENT_ROWS = 50
TIMEOUT_S = 900
WARM_UP_ROWS = 500
# How the run knows every row arrived. "pipeline": the change log and the fetch queue went empty (nothing waiting
# or in flight: a fetcher deletes its messages only once every sink answered), then one read of both sinks confirms
# it (read again, and the clock kept running, until it does). "sinks": the sinks read until they hold every row,
# which took the machine's CPU from the pipeline it measures (the bench's reads, OpenSearch's and ministack's
# answers to them), as no user's deployment spends it.
WAIT = os.environ.get("BENCH_E2E_WAIT", "pipeline")
WAITS = {
    "pipeline": "known by the change log and the fetch queue going empty, then one read of both sinks",
    "sinks": "known by reading the sinks, the rows not yet seen, every 1 s, 0.1 s for the last tenth",
}
LOGS_SETTLE_S = 3.0  # a function's last lines reach ministack's CloudWatch Logs a moment after it answers


def breakdown(env: StackEnv, start_ms: int, end_ms: int) -> dict[str, Any]:
    """Where the run's time went, from the fetcher's batch lines and the parser's drain lines."""
    logs = aws_client(env.environ(), "logs")
    batches = log_lines(logs, env.fetcher_log_group, "changes applied", start_ms, end_ms)
    drains = log_lines(logs, env.parser_log_group, "change log drained", start_ms, end_ms)
    stages: dict[str, list[int]] = {}
    for line in batches:
        for stage, entry in (line.get("stages") or {}).items():
            stages.setdefault(stage, []).extend(entry.get("ms") or [])
    claimed = sum(int(d.get("claimed", 0)) for d in drains)
    drained_batches = sum(int(d.get("batches", 0)) for d in drains)
    handoff_s = sum(float(d.get("handoff_s", 0.0)) for d in drains)
    delete_s = sum(float(d.get("delete_s", 0.0)) for d in drains)
    send_s = sum(float(d.get("send_s", 0.0)) for d in drains)
    # a drain line before the send ahead has no send_wait_s: it waited for every send
    send_wait_s = sum(float(d.get("send_wait_s", d.get("send_s", 0.0))) for d in drains)
    return {
        "fetcher_invocations": len(batches),
        "messages": sum(int(b.get("messages", 0)) for b in batches),
        "changes_fetched": sum(int(b.get("changes", 0)) for b in batches),
        "changes_per_invocation": round(statistics.mean(int(b.get("changes", 0)) for b in batches), 1)
        if batches
        else None,
        "drains": len(drains),
        "drained_batches": drained_batches,
        "rows_claimed": claimed,
        "rows_per_batch": round(claimed / drained_batches, 1) if drained_batches else None,
        "handoff_s": round(handoff_s, 2),
        "delete_s": round(delete_s, 2),
        "send_s": round(send_s, 2),
        "send_wait_s": round(send_wait_s, 2),
        "sent_ahead": sum(int(d.get("sent_ahead", 0)) for d in drains),
        "ms_per_batch": round(handoff_s * 1000 / drained_batches, 1) if drained_batches else None,
        "stages_ms": {
            stage: {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}
            for stage, values in stages.items()
            if values
        },
    }


def deployed(env: StackEnv, stack: Stack, rows_count: int = ROWS) -> dict[str, Any]:
    """``rows_count`` rows written, and waited for until both sinks hold every one (WAIT); the figures and
    reconcile's verdict."""
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
    ids = list(range(first, first + rows_count))
    changes = [Change("posts", (("id", k),), "update", 1) for k in ids]
    doc_ids = [opensearch_document_id(posts, c) for c in changes]
    keys = [dynamodb_key(posts, c) for c in changes]
    bridge = lambda_async_bridge()
    bridge.configure(env.parser_function_arn, delay_ms=AURORA_LAMBDA_ASYNC_MS)
    try:
        cpu_before = snapshot()
        started, started_ms = time.monotonic(), int(time.time() * 1000)
        rows = ((key, f"e2e {key}", "body " * 40) for key in ids)
        insert_rows(conn, "INSERT INTO posts (id, title, body, author) VALUES (%s, %s, %s, 'bench')", rows,
                    chunk=STATEMENT_ROWS)  # fmt: skip
        # lambda_async returns once Lambda has accepted the ring, inside the statement: the rings have left
        written = time.monotonic()
        if WAIT == "pipeline":
            wait_until_drained(stack, env.fetch_queue_url, started)
            drained, cpu_drained = time.monotonic(), snapshot()
            looks = wait_until_held(readers, posts, doc_ids, keys, started)
            arrived, cpu_after = (drained, cpu_drained) if looks == 1 else (time.monotonic(), snapshot())
        else:
            wait_until_held(readers, posts, doc_ids, keys, started)
            arrived, cpu_after = time.monotonic(), snapshot()
        cpu = measure(cpu_before, cpu_after)  # from the first statement until both sinks held every row
        opensearch.indices.refresh(index=posts.opensearch.index)  # reconcile's orphan scan searches
        check = reconcile(conn, Mappings({"posts": posts}), readers, tables=["posts"])
        tally = {sink: vars(t) for sink, t in check.tables["posts"].items()}
    finally:
        bridge.reset(env.parser_function_arn)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM posts WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))
        conn.close()
    time.sleep(LOGS_SETTLE_S)
    ended_ms = started_ms + int((arrived - started) * 1000) + int(LOGS_SETTLE_S * 1000)
    return {
        "wait": WAIT,
        "write_s": round(written - started, 2),
        "end_to_end_s": round(arrived - started, 2),
        "rows_per_s": round(rows_count / (arrived - started), 1),
        "reconcile_agrees": check.agrees,
        "reconcile": {sink: {k: v for k, v in t.items() if k != "examples"} for sink, t in tally.items()},
        "breakdown": breakdown(env, started_ms, ended_ms),
        "cpu": cpu,
    }


def wait_until_drained(stack: Stack, fetch_queue_url: str, started: float) -> None:
    """Until nothing waits in the change log or the fetch queue, visible or in flight. The log is read before the
    queue: the drainer deletes a change's row only once its message was sent, so a change is always in one of
    them (or both) until a fetcher has written it to every sink and deleted its message. Not watch_drain: it waits
    for a second empty reading an interval later, which the clock would count; here the first one ends it."""
    while (waiting := backlog(stack, fetch_queue_url)).total:
        if time.monotonic() - started > TIMEOUT_S:
            raise SystemExit(f"after {TIMEOUT_S}s the pipeline still holds {waiting}")
        time.sleep(0.5 if waiting.log_rows > 1000 else 0.1)


def wait_until_held(
    readers: SinkReaders, posts: TableMapping, doc_ids: list[str], keys: list[dict[str, str]], started: float
) -> int:
    """Until OpenSearch and DynamoDB hold every written row. Each look reads only the rows that sink was not yet
    seen to hold (``_mget`` is real-time: no refresh), once a second while more than a tenth is missing and every
    0.1 s after, so that the bench's own reads take little from the pipeline it measures (it read all 20,000 rows
    from both sinks every 0.25 s, ministack serving the reads beside the fetchers' writes). Returns how many looks
    it took."""
    missing_documents = list(doc_ids)
    missing_items = {json.dumps(key, sort_keys=True): key for key in keys}
    attributes = list(keys[0]) if keys else []
    looks = 0
    while missing_documents or missing_items:
        looks += 1
        try:
            held = readers.documents(posts, missing_documents)
        except NotFoundError:  # a fresh stack: the fetcher's first write creates the index
            held = {}
        except RuntimeError as exc:  # the index that write created, its shard still starting: read it again
            if "no_shard_available_action_exception" not in str(exc):
                raise
            held = {}
        missing_documents = [doc_id for doc_id in missing_documents if doc_id not in held]
        for item in readers.items(posts, list(missing_items.values())):
            if not item.get("_deleted"):
                key = {attribute: item[attribute] for attribute in attributes}
                missing_items.pop(json.dumps(key, sort_keys=True), None)
        if not missing_documents and not missing_items:
            return looks
        if time.monotonic() - started > TIMEOUT_S:
            missing = f"{len(missing_documents)} rows missing in OpenSearch, {len(missing_items)} in DynamoDB"
            raise SystemExit(f"after {TIMEOUT_S}s: {missing}")
        many = max(len(missing_documents), len(missing_items)) * 10 > len(doc_ids)
        time.sleep(1.0 if many else 0.1)
    return looks


def per_1000(count: float, changes: int) -> float:
    return round(count * 1000 / changes, 1)


def main() -> int:
    env = StackEnv.read() or deployed_stack()
    cfg = LocalConfig.from_env()
    stack = Stack.connect(env)
    # A warm-up through the stack first: a deploy leaves no function warm, and a bulk write that meets a cold
    # parser rings once a statement until the first drainer holds the lock (a herd of cold starts, not throughput)
    deployed(env, stack, WARM_UP_ROWS)
    watch_drain(stack, env.fetch_queue_url, timeout=TIMEOUT_S)
    before = packed_in_process(cfg, ROWS, event_bus=env.event_bus_name)
    run = deployed(env, stack)
    # the rows' deletes go through the stack too: worked off before the in-process figure is taken again
    watch_drain(stack, env.fetch_queue_url, timeout=TIMEOUT_S)
    after = packed_in_process(cfg, ROWS, event_bus=env.event_bus_name)
    in_process = round((before["changes_per_s"] + after["changes_per_s"]) / 2, 1)
    seen = run["breakdown"]
    invocations = seen["fetcher_invocations"]
    # the parser's sends (a drained batch: one message, one request, while it packs into 256 KB), then the
    # event source's receive and delete per invocation
    sqs_requests = max(seen["messages"], seen["drained_batches"]) + 2 * invocations
    ratio = round(run["rows_per_s"] / in_process, 3)
    result = {
        "rows": ROWS,
        "rows_per_statement": STATEMENT_ROWS,
        "lambda_async_ms_per_call": AURORA_LAMBDA_ASYNC_MS,
        "fetch_batch_size_in_process": FETCH_BATCH,
        "wait": run["wait"],
        "write_s": run["write_s"],
        "end_to_end_s": run["end_to_end_s"],
        "end_to_end_rows_per_s": run["rows_per_s"],
        "in_process_changes_per_s": {
            "before": before["changes_per_s"],
            "after": after["changes_per_s"],
            "mean": in_process,
        },
        "end_to_end_over_in_process": ratio,
        "cpu_end_to_end": run["cpu"],
        "deployed_per_1000": {
            "fetcher_invocations": per_1000(invocations, ROWS),
            "sqs_requests": per_1000(sqs_requests, ROWS),
        },
        "in_process_per_1000": {
            "fetcher_invocations": before["invocations_per_1000"],
            "sqs_requests": before["sqs_requests_per_1000"],
        },
        "breakdown": seen,
        "reconcile_agrees": run["reconcile_agrees"],
        "reconcile": run["reconcile"],
    }
    stages = "".join(f"| {stage} | {v['p50']} | {v['p99']} | {v['max']} |\n" for stage, v in seen["stages_ms"].items())
    write_results(
        "end_to_end",
        result,
        "# End to end through the deployed local stack, beside in process (one run)\n\n"
        f"{ROWS} rows inserted in MySQL 8.0.31, {STATEMENT_ROWS} a statement; triggers, lambda_async (loadable "
        f"function → bridge, {AURORA_LAMBDA_ASYNC_MS} ms a call as Aurora's), parser and fetcher on ministack, both "
        "sinks and the change events. In process: the fetcher's entry on the packed messages of as many rows of the "
        "same shape, the same sinks and bus, "
        f"{FETCH_BATCH} an invocation, measured just before and just after "
        "(`BENCH_E2E_ROWS=20000 .venv/bin/python -m bench.bench_end_to_end`).\n\n"
        "| figure | value |\n|---|---|\n"
        f"| writes (and their rings) done after | {result['write_s']} s |\n"
        f"| every row in both sinks after ({WAITS[run['wait']]}) | {result['end_to_end_s']} s |\n"
        f"| **end to end** | **{run['rows_per_s']} rows/s** |\n"
        f"| in process, packed (before / after / mean) | {before['changes_per_s']} / {after['changes_per_s']} / "
        f"{in_process} changes/s |\n"
        f"| **end to end / in process** | **{ratio}** (target ≥ 0.5) |\n"
        f"| fetcher invocations per 1,000 changes (deployed / in process) | "
        f"{result['deployed_per_1000']['fetcher_invocations']} / {before['invocations_per_1000']} |\n"
        f"| SQS requests per 1,000 changes (deployed / in process) | {result['deployed_per_1000']['sqs_requests']} / "
        f"{before['sqs_requests_per_1000']} |\n"
        f"| full reconcile of posts afterwards | {'agrees' if run['reconcile_agrees'] else 'DISAGREES'} |\n\n"
        "Where the time went (the functions' log lines of the run):\n\n"
        "| | |\n|---|---|\n"
        f"| parser drains / batches / rows claimed | {seen['drains']} / {seen['drained_batches']} / "
        f"{seen['rows_claimed']} ({seen['rows_per_batch']} a batch) |\n"
        f"| time in the drainer's hand-offs (parse, wait for the send, delete, commit) | {seen['handoff_s']} s, "
        f"{seen['ms_per_batch']} ms a batch; waiting for sends {seen['send_wait_s']} s (the sends took "
        f"{seen['send_s']} s; {seen['sent_ahead']} batches sent ahead), deleting and committing "
        f"{seen['delete_s']} s |\n"
        f"| fetcher invocations / messages / changes | {seen['fetcher_invocations']} / {seen['messages']} / "
        f"{seen['changes_fetched']} ({seen['changes_per_invocation']} an invocation) |\n\n"
        "| stage (fanout.pipeline.stage_times) | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n"
        + stages
        + "\nWhere the machine's CPU went from the first statement until both sinks held every row "
        "(`bench/cpu_share.py`):\n\n" + cpu_table(run["cpu"], ROWS),
    )
    print(json.dumps(result, indent=2))
    return 0 if run["reconcile_agrees"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
