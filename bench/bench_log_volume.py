"""Benchmark: how many bytes of logs each replicated change writes (what CloudWatch Logs ingests and bills).

Runs the real parser and fetcher handlers in this process, wired by their own
cold-start code to the local stack (MySQL 8.0, the local OpenSearch node, ministack's
SQS and DynamoDB), at the production log level (INFO), and counts what each
invocation writes to stdout: the JSON log lines and the embedded-metric-format
blobs. Lambda adds its own START/END/REPORT lines per invocation (not written by
the code, so not counted here; docs/cost.md adds them).

Scenarios, per change: the parser (one invoke per trigger payload), the fetcher
invoked directly (FetchMode=direct: one change per event) and the fetcher taking
queued batches of 10 (FetchMode=queued, the default batch size).

    .venv/bin/python -m bench.bench_log_volume --label after                 # this checkout
    .venv/bin/python -m bench.bench_log_volume --label before --code-root D  # another checkout's code (D)

Each run adds its column to bench/results/log_volume.json and rewrites
bench/results/log_volume.md with every column side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHANGES = 200
QUEUED_BATCH = 10
# CloudWatch Logs standard ingestion, us-east-1 (docs/cost.md gives the source).
USD_PER_GB_INGESTED = 0.50


class Context:
    """The parts of a Lambda context the handlers read, with values as long as Lambda's."""

    def __init__(self, function: str) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = f"fanout-prod-{function}"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"


def load_handler(code_root: Path, function: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{function}_app", code_root / f"{function}_fn" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logged_bytes(call: Any) -> tuple[int, int, Any]:
    """(bytes, lines) written to stdout by ``call()``, and what it returned."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = call()
    text = out.getvalue()
    return len(text.encode("utf-8")), len(text.splitlines()), result


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    now_ms = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "r" * 180,
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now_ms},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fanout-prod-fetch",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def measure(code_root: Path) -> dict[str, Any]:
    # Imported here, not at the top: local.database imports fanout from this checkout's layer, and the handlers
    # measured must import the code under test (``code_root``) instead, so fanout is unloaded after these.
    from bench.harness import create_replica_table, local_services
    from local.database import admin_connection, create_database, drop_database
    from local.deploy import aws_client

    sys.path.insert(0, str(code_root / "layers" / "common"))
    for name in [m for m in sys.modules if m == "fanout" or m.startswith("fanout.")]:
        del sys.modules[name]
    cfg = local_services()
    endpoint = cfg.opensearch_endpoint
    db_name = create_database(cfg, prefix="fanout_logbench")
    _, table = create_replica_table(cfg, db_name)
    sqs = aws_client(cfg, "sqs")
    fetch_queue = sqs.create_queue(QueueName=f"{db_name}-fetch")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"{db_name}-dlq")["QueueUrl"]
    index = f"posts-{db_name.replace('_', '-')}"
    mapping_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"{db_name}-tables.json"
    try:
        conn = admin_connection(cfg, db_name)
        with conn.cursor() as cur:
            cur.execute((ROOT / "local" / "demo_schema.sql").read_text().split(";")[0])
            cur.executemany(
                "INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)",
                [(f"post {i}", "body " * 40, "bench") for i in range(CHANGES)],
            )
        conn.close()
        os.environ.update(
            cfg.aws_env()
            | cfg.db_env()
            | {
                "DB_NAME": db_name,
                "OPENSEARCH_ENDPOINT": endpoint,
                "DYNAMODB_TABLE": db_name,
                "DEAD_LETTER_QUEUE_URL": dlq,
                "FETCH_QUEUE_URL": fetch_queue,
                "POWERTOOLS_SERVICE_NAME": "fanout-prod",
                "POWERTOOLS_METRICS_NAMESPACE": "fanout",
                "LOG_LEVEL": "INFO",
            }
        )
        tables = json.loads((code_root / "layers" / "common" / "fanout" / "tables.json").read_text())
        tables["tables"]["posts"].setdefault("opensearch", {})["index"] = index  # a throwaway index of the bench's own
        mapping_file.write_text(json.dumps(tables))
        os.environ["FANOUT_MAPPING_FILE"] = str(mapping_file)
        parser = load_handler(code_root, "parser")
        fetcher = load_handler(code_root, "fetcher")
        import fanout

        assert Path(fanout.__file__).is_relative_to(code_root), (fanout.__file__, code_root)

        result: dict[str, Any] = {}
        # the parser: one invoke per trigger payload (the trigger fires one per row)
        parser_bytes = parser_lines = 0
        for i in range(CHANGES):
            payload = {"v": 1, "action": "update", "table": "posts", "pk": {"id": i + 1}, "ts": time.time()}
            size, count, _ = logged_bytes(lambda p=payload: parser.handler(p, Context("parser")))
            parser_bytes, parser_lines = parser_bytes + size, parser_lines + count
        result["parser"] = {"bytes": parser_bytes / CHANGES, "lines": parser_lines / CHANGES}
        bodies = []
        while len(bodies) < CHANGES:
            got = sqs.receive_message(QueueUrl=fetch_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            bodies += [m["Body"] for m in got.get("Messages", [])]
        # the fetcher invoked directly, one change per event
        direct_bytes = direct_lines = 0
        for body in bodies:
            event = json.loads(body)
            size, count, _ = logged_bytes(lambda e=event: fetcher.handler(e, Context("fetcher")))
            direct_bytes, direct_lines = direct_bytes + size, direct_lines + count
        result["fetcher_direct"] = {"bytes": direct_bytes / CHANGES, "lines": direct_lines / CHANGES}
        # the fetcher taking queued batches
        queued_bytes = queued_lines = 0
        for start in range(0, CHANGES, QUEUED_BATCH):
            event = sqs_event(bodies[start : start + QUEUED_BATCH])
            size, count, answer = logged_bytes(lambda e=event: fetcher.handler(e, Context("fetcher")))
            assert answer == {"batchItemFailures": []}, answer
            queued_bytes, queued_lines = queued_bytes + size, queued_lines + count
        result["fetcher_queued_10"] = {"bytes": queued_bytes / CHANGES, "lines": queued_lines / CHANGES}
        # the operator commands with --quiet, on the same rows: what they print (stdout and stderr) per row
        conn = admin_connection(cfg, db_name)
        with conn.cursor() as cur:
            cur.execute((ROOT / "db" / "migrations" / "V005__backfill_checkpoint.sql").read_text())
        conn.close()
        for name, argv in (
            ("cli_backfill_quiet", ["backfill", "posts", "--quiet"]),
            ("cli_reconcile_repair_quiet", ["reconcile", "posts", "--repair", "--quiet"]),
        ):
            if name == "cli_reconcile_repair_quiet":  # something to repair: every row missing from DynamoDB
                for i in range(CHANGES):
                    table.delete_item(Key={"pk": f"posts#{i + 1}"})
            size = cli_output_bytes(code_root, argv)
            result[name] = {"bytes": size / CHANGES, "lines": 0}
        return result
    finally:
        mapping_file.unlink(missing_ok=True)
        table.delete()
        for url in (fetch_queue, dlq):
            sqs.delete_queue(QueueUrl=url)
        import requests

        requests.delete(f"{endpoint}/{index}", timeout=10)
        drop_database(cfg, db_name)


def cli_output_bytes(code_root: Path, argv: list[str]) -> int:
    """Bytes ``fanout ARGV`` (of ``code_root``) writes to stdout and stderr, run as an operator would."""
    import subprocess

    # The CLI is in cli/ (fanout_cli); a checkout from before it left the layer has it as fanout.cli.
    paths = [str(code_root / "layers" / "common"), str(code_root / "cli")]
    program = (
        f"import sys; sys.path[:0] = {paths!r}\n"
        "try:\n    from fanout_cli.main import main\nexcept ImportError:\n    from fanout.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, *argv], capture_output=True, env=os.environ | {"PYTHONPATH": ""}, check=False
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"fanout {' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
    return len(done.stdout) + len(done.stderr)


ROWS = [
    ("parser, per change (one invoke each)", "parser"),
    ("fetcher, direct (one change per invoke)", "fetcher_direct"),
    ("fetcher, queued batches of 10", "fetcher_queued_10"),
]


def render(results: dict[str, dict[str, Any]]) -> str:
    labels = list(results)
    head = "| per change | " + " | ".join(f"{label}: bytes (lines)" for label in labels) + " |"
    out = [
        "# Log bytes per replicated change",
        "",
        f"`bench/bench_log_volume.py`: the real handlers at LOG_LEVEL=INFO on the local stack, {CHANGES} changes; "
        "bytes written to stdout (JSON log lines + EMF metric blobs) per change, averaged. Lambda's own "
        "START/END/REPORT lines per invocation are not included (docs/cost.md adds them).",
        "",
        head,
        "|---|" + "---|" * len(labels),
    ]
    for title, key in ROWS:
        cells = [f"{results[label][key]['bytes']:,.0f} ({results[label][key]['lines']:.1f})" for label in labels]
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    out += [
        "",
        f"Per million changes (parser + fetcher), GB ingested and USD at ${USD_PER_GB_INGESTED:.2f}/GB:",
        "",
        "| design | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for title, fetcher_key in (("direct", "fetcher_direct"), ("queued, batches of 10", "fetcher_queued_10")):
        cells = []
        for label in labels:
            per_change = results[label]["parser"]["bytes"] + results[label][fetcher_key]["bytes"]
            gb = per_change * 1_000_000 / 1e9
            cells.append(f"{gb:.2f} GB, ${gb * USD_PER_GB_INGESTED:.2f}")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Operator commands with `--quiet` (stdout + stderr, per row):",
        "",
        "| command | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for title, key in (
        ("`fanout backfill posts --quiet`", "cli_backfill_quiet"),
        ("`fanout reconcile posts --repair --quiet` (every row repaired)", "cli_reconcile_repair_quiet"),
    ):
        cells = [f"{results[label][key]['bytes']:,.1f} B" if key in results[label] else "-" for label in labels]
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    if len(labels) >= 2:
        first, last = labels[0], labels[-1]
        out += ["", f"Ratio {first} / {last} (bytes per change):", ""]
        for title, key in ROWS:
            ratio = results[first][key]["bytes"] / results[last][key]["bytes"]
            out.append(f"- {title}: {ratio:.1f}×")
    return "\n".join(out) + "\n"


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--label", required=True, help="the column's name (e.g. before / after)")
    args.add_argument("--code-root", type=Path, default=ROOT, help="the checkout whose handlers are measured")
    options = args.parse_args()
    measured = measure(options.code_root.resolve())
    store = RESULTS / "log_volume.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    results[options.label] = measured
    RESULTS.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "log_volume.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
