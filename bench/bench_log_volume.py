"""Benchmark: how many bytes of logs each replicated change writes (what CloudWatch Logs ingests and bills).

Runs today's path with the real parser and fetcher handlers in this process, wired by their own cold-start code
to the local stack (MySQL 8.0, the local OpenSearch node, ministack's SQS and DynamoDB), at the production log
level (INFO):

- the capture triggers installed as the post-deploy hook installs them; CHANGES rows written, each logged in the
  change log (the trigger's ring goes to the lambda_async bridge, which only counts it);
- the parser rung once (events/ring.json's shape): it drains the log and its forwarder packs the changes into
  messages on a real (ministack) fetch queue;
- the fetcher handed those messages as Lambda's event source hands them, FetchBatchSize (template.yaml's
  default) messages an invocation.

It counts what each invocation writes to stdout: the JSON log lines and the embedded-metric-format blobs. Lambda
adds its own START/END/REPORT lines per invocation (not written by the code, so not counted; docs/cost.md adds
them). The figures are per change, per invocation and per 1,000 changes, for each function.

There is no side-by-side against another checkout: a checkout from before the change log and packed messages
has neither the ring nor the message format this drives, so its handlers cannot run these scenarios.

    .venv/bin/python -m bench.bench_log_volume      # -> bench/results/log_volume.{json,md}
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# Production's settings, before fanout is imported: its logger and metrics take them then (bench/__init__.py
# quiets the timing benchmarks with LOG_LEVEL=WARNING).
os.environ.update(
    {"LOG_LEVEL": "INFO", "POWERTOOLS_SERVICE_NAME": "fanout-prod", "POWERTOOLS_METRICS_NAMESPACE": "fanout"}
)

from bench.harness import ROOT, create_replica_table, insert_rows, local_services, write_results
from fanout.config import DatabaseSettings
from fanout.sinks.opensearch import make_client
from local.database import admin_connection, create_database, drop_database, run_sql_file
from local.deploy import aws_client
from tests.support.files import load_module, template_parameter_default
from tests.support.indices import delete_index
from tests.support.integration import install_capture_triggers, lambda_async_bridge, parser_arn

CHANGES = int(os.environ.get("BENCH_LOG_CHANGES", "5000"))
FETCH_BATCH = int(template_parameter_default("FetchBatchSize"))
# CloudWatch Logs standard ingestion, us-east-1 (docs/cost.md gives the source).
USD_PER_GB_INGESTED = 0.50


class Context:
    """The parts of a Lambda context the handlers read, with values as long as Lambda's."""

    def __init__(self, function: str, timeout_s: int) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = f"fanout-prod-{function}"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self._ends = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


class Logged:
    """Bytes and lines written to stdout over the invocations of one function."""

    def __init__(self) -> None:
        self.bytes = self.emf_bytes = self.lines = self.invocations = 0

    def call(self, invoke: Callable[[], Any]) -> Any:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = invoke()
        text = out.getvalue()
        self.bytes += len(text.encode("utf-8"))
        self.emf_bytes += sum(len(line.encode("utf-8")) + 1 for line in text.splitlines() if line.startswith('{"_aws"'))
        self.lines += len(text.splitlines())
        self.invocations += 1
        return result

    def figures(self, changes: int) -> dict[str, float]:
        return {
            "invocations": self.invocations,
            "bytes_per_change": round(self.bytes / changes, 1),
            "log_line_bytes_per_change": round((self.bytes - self.emf_bytes) / changes, 1),
            "emf_bytes_per_change": round(self.emf_bytes / changes, 1),
            "bytes_per_invocation": round(self.bytes / self.invocations),
            "lines_per_invocation": round(self.lines / self.invocations, 1),
            "bytes_per_1000_changes": round(self.bytes * 1000 / changes),
        }


def sqs_event(bodies: list[str], queue_arn: str) -> dict[str, Any]:
    now_ms = str(int(time.time() * 1000))
    record = {"receiptHandle": "r" * 180, "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now_ms},
              "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
              "awsRegion": "us-east-1"}  # fmt: skip
    return {"Records": [record | {"messageId": str(uuid.uuid4()), "body": body} for body in bodies]}


def received(sqs: Any, queue_url: str) -> list[str]:
    """Every message on the queue (the parser has returned: all of them are there)."""
    bodies: list[str] = []
    while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
        bodies += [m["Body"] for m in got]
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )
    return bodies


def measure() -> dict[str, Any]:
    cfg = local_services()
    db_name = create_database(cfg, prefix="fanout_logbench")
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password)
    _, table = create_replica_table(cfg, db_name)
    sqs = aws_client(cfg, "sqs")
    fetch_queue = sqs.create_queue(QueueName=f"{db_name}-fetch")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"{db_name}-dlq")["QueueUrl"]
    index = f"posts-{db_name.replace('_', '-')}"
    mapping_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"{db_name}-tables.json"
    try:
        conn = admin_connection(cfg, db_name)
        run_sql_file(conn, ROOT / "local" / "demo_schema.sql")  # every mapped table: the migrations trigger them all
        install_capture_triggers(settings)
        insert_rows(
            conn,
            "INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)",
            ((f"post {i}", "body " * 40, "bench") for i in range(CHANGES)),
            chunk=500,
        )
        conn.close()
        tables = json.loads((ROOT / "layers" / "common" / "fanout" / "tables.json").read_text())
        tables["tables"]["posts"]["opensearch"]["index"] = index  # a throwaway index of the bench's own
        mapping_file.write_text(json.dumps(tables))
        os.environ.update(
            cfg.aws_env()
            | cfg.db_env()
            | {
                "DB_NAME": db_name,
                "OPENSEARCH_ENDPOINT": cfg.opensearch_endpoint,
                "DYNAMODB_TABLE": db_name,
                "DEAD_LETTER_QUEUE_URL": dlq,
                "FETCH_QUEUE_URL": fetch_queue,
                "FANOUT_MAPPING_FILE": str(mapping_file),
            }
        )
        os.environ.pop("AWS_XRAY_DAEMON_ADDRESS", None)
        parser = load_module("parser_fn/app.py", "parser_app_log_volume")
        fetcher = load_module("fetcher_fn/app.py", "fetcher_app_log_volume")

        parser_log, fetcher_log = Logged(), Logged()
        ring = json.loads((ROOT / "events" / "ring.json").read_text()) | {"ts": time.time()}
        report = parser_log.call(partial(parser.handler, ring, Context("parser", 60)))
        parser._database().close()
        assert report["forwarded"] == CHANGES, report
        bodies = received(sqs, fetch_queue)
        queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{db_name}-fetch"
        for start in range(0, len(bodies), FETCH_BATCH):
            event = sqs_event(bodies[start : start + FETCH_BATCH], queue_arn)
            answer = fetcher_log.call(partial(fetcher.handler, event, Context("fetcher", 900)))
            assert answer == {"batchItemFailures": []}, answer
        return {
            "changes": CHANGES,
            "messages": len(bodies),
            "fetch_batch_size": FETCH_BATCH,
            "parser": parser_log.figures(CHANGES),
            "fetcher": fetcher_log.figures(CHANGES),
        }
    finally:
        mapping_file.unlink(missing_ok=True)
        table.delete()
        for url in (fetch_queue, dlq):
            sqs.delete_queue(QueueUrl=url)
        delete_index(make_client(cfg.opensearch_endpoint), index)
        lambda_async_bridge().reset(parser_arn(db_name))
        drop_database(cfg, db_name)


def render(result: dict[str, Any]) -> str:
    parser, fetcher = result["parser"], result["fetcher"]
    per_change = parser["bytes_per_change"] + fetcher["bytes_per_change"]
    gb = per_change * 1_000_000 / 1e9
    rows = "".join(
        f"| {name} | {r['invocations']} | {r['bytes_per_invocation']:,} ({r['lines_per_invocation']} lines) | "
        f"{r['bytes_per_change']:,} ({r['log_line_bytes_per_change']:,} + {r['emf_bytes_per_change']:,}) | "
        f"{r['bytes_per_1000_changes']:,} |\n"
        for name, r in (("parser (rung once, drains the log)", parser), ("fetcher (packed messages)", fetcher))
    )
    return (
        "# Log bytes per replicated change\n\n"
        f"`bench/bench_log_volume.py`: the real handlers at LOG_LEVEL=INFO on the local stack (MySQL 8.0, OpenSearch, "
        f"ministack). {result['changes']:,} rows written through the capture triggers; the parser rung once drained "
        f"them into {result['messages']} packed messages; the fetcher took them {result['fetch_batch_size']} an "
        "invocation (template.yaml's FetchBatchSize). Bytes written to stdout (JSON log lines + EMF metric blobs); "
        "Lambda's own START/END/REPORT lines per invocation are not included (docs/cost.md adds them).\n\n"
        "| function | invocations | bytes per invocation | bytes per change (log lines + EMF) "
        "| bytes per 1,000 changes |\n"
        "|---|---|---|---|---|\n"
        f"{rows}\n"
        f"Per million changes (parser + fetcher): {gb:.4f} GB ingested, ${gb * USD_PER_GB_INGESTED:.4f} at "
        f"${USD_PER_GB_INGESTED:.2f}/GB.\n"
    )


def main() -> int:
    result = measure()
    markdown = render(result)
    write_results("log_volume", result, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
