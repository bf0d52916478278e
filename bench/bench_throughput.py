"""Benchmark: the original one-invoke-per-row design against the queued, batched fetch path.

In one process run, on the same rows and the same change streams, against the real
local servers (MySQL 8.0, the real OpenSearch node, DynamoDB on ministack):

  per-row   the original design: per change one parser invoke, one fetcher invoke, one
            locking SELECT, one OpenSearch request and one DynamoDB write
            (fanout.pipeline.fetcher.Fetcher.apply on one change, the sinks' per-row ``apply``);
  queued    ours: per change one parser invoke and one SendMessageBatch entry; the fetcher
            takes up to BATCH changes a time (the SQS event source), coalesces keys, reads
            them in one SKIP LOCKED query per table and writes with ``_bulk`` and
            conditional puts in TransactWriteItems (fanout.pipeline.fetcher.Fetcher.apply on a batch).

Both run in this process, the handlers' domain code called directly (the parser's
``parse_trigger_payload``, the fetcher's ``Fetcher.apply``), with one fetcher at a time:
the deployed Lambdas on ministack would add ministack's own per-invoke process start
(hundreds of ms on this 2-core machine, nothing like AWS's warm invoke) and measure
ministack rather than the design. The fetch queue is an in-memory list whose requests
are counted as SQS requests (SendMessageBatch per parser invoke; Receive + DeleteMessageBatch
per fetcher batch), not ministack's SQS. Round trips and requests are counted with
instrumented clients (pymysql commands, OpenSearch transport requests, botocore sends).

    make bench   # -> bench/results/throughput.{json,md,png}

Absolute numbers depend on this shared machine; the ratios, in the same run, are the result.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql

from bench.harness import create_replica_table, local_services
from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks import Outcome, apply_each
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import ConnectionHolder, connect
from fanout.source.reader import DatabaseSource
from fanout.source.rows import RowState
from local.config import LocalConfig
from local.database import create_database, drop_database
from tests.support.indices import delete_index

ROOT = Path(__file__).resolve().parent.parent
ROWS = 5000
BATCH = 100  # changes per queued fetcher invocation in the throughput runs (FetchBatchSize)
WORKLOADS = {"uniform": 2000, "hot-key": 2000, "burst": 10000}
STEADY_RATE = 50  # changes/s for the latency runs
STEADY_SECONDS = 8
OUT = ROOT / "bench" / "results"


# --------------------------------------------------------------------------- counting


class Counts:
    def __init__(self) -> None:
        self.c: Counter[str] = Counter()
        self.lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.c[name] += n

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.c)


COUNTS = Counts()
_original_execute_command = pymysql.connections.Connection._execute_command


def _counted_execute_command(self: Any, command: int, sql: Any) -> Any:
    """Every command a connection sends (COM_QUERY, COM_PING, ...) is one round trip."""
    if getattr(self, "_bench_counted", False):
        COUNTS.add("db_round_trips")
    return _original_execute_command(self, command, sql)


pymysql.connections.Connection._execute_command = _counted_execute_command  # type: ignore[method-assign]


class CountedHolder(ConnectionHolder):
    """The fetcher's connection holder (a ping per use), its connection counted."""

    def get(self) -> pymysql.connections.Connection:
        conn = super().get()
        conn._bench_counted = True  # type: ignore[attr-defined]
        return conn


def count_opensearch(client: Any) -> None:
    transport = client.transport
    original = transport.perform_request

    def perform_request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        COUNTS.add("opensearch_requests")
        return original(method, url, *args, **kwargs)

    transport.perform_request = perform_request


def count_dynamodb(client: Any) -> None:
    client.meta.events.register("before-send.dynamodb.*", lambda **_: COUNTS.add("dynamodb_requests"))


class PerRowSink:
    """A sink seen through its per-row ``apply`` only (the original design: one request per change)."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink
        self.name = sink.name

    def enabled_for(self, mapping: Any) -> bool:
        return bool(self._sink.enabled_for(mapping))

    def apply(self, mapping: Any, change: Change, state: RowState) -> Outcome:
        return self._sink.apply(mapping, change, state)  # type: ignore[no-any-return]

    def apply_batch(self, mapping: Any, items: Any) -> list[Outcome | Exception]:
        return apply_each(self, mapping, items)


# --------------------------------------------------------------------------- the two designs


@dataclass
class World:
    settings: DatabaseSettings
    mappings: Mappings
    sinks: list[Any]
    writer: Any
    table: Any
    opensearch: Any
    index: str


def payload(key: int, now: float) -> dict[str, Any]:
    return {"v": 1, "action": "update", "table": "posts", "pk": {"id": key}, "old_pk": None, "ts": now}


def reject(reason: str, payload: Any, correlation_id: str) -> None:
    raise AssertionError(f"bench change rejected: {reason}")


class Design:
    """A parser and a fetcher of one design; ``submit`` is a trigger's invoke, ``drain`` the fetchers."""

    name = ""

    def __init__(self, world: World) -> None:
        self.world = world
        self.database = CountedHolder(world.settings)
        self.pending: list[Change] = []
        self.cond = threading.Condition()
        self.done_at: dict[int, float] = {}  # change serial -> time its fetch finished
        self.cpu_seconds = 0.0

    def submit(self, key: int, serial: int) -> None:
        COUNTS.add("parser_invocations")
        # the parser's step: a change-log row's payload validated and handed on (the drainer's hand_on)
        self.forward(parse_trigger_payload(payload(key, time.time()), self.world.mappings, str(serial)))

    def forward(self, changes: Sequence[Change]) -> None:
        raise NotImplementedError

    def take(self, block: bool) -> list[Change]:
        raise NotImplementedError

    def fetch(self, changes: list[Change]) -> None:
        raise NotImplementedError

    def run_fetcher(self, stop: threading.Event) -> None:
        while True:
            batch = self.take(block=True)
            if not batch:
                if stop.is_set():
                    return
                continue
            started = time.thread_time()
            self.fetch(batch)
            self.cpu_seconds += time.thread_time() - started
            finished = time.perf_counter()
            for change in batch:
                self.done_at[int(change.correlation_id)] = finished


class PerRow(Design):
    name = "per-row"

    def forward(self, changes: Sequence[Change]) -> None:  # the retired direct mode: one async invoke
        with self.cond:
            self.pending.append(list(changes))  # type: ignore[arg-type]
            self.cond.notify()

    def take(self, block: bool) -> list[Change]:
        with self.cond:
            if not self.pending and block:
                self.cond.wait(0.05)
            return self.pending.pop(0) if self.pending else []  # type: ignore[return-value]

    def fetch(self, changes: list[Change]) -> None:
        COUNTS.add("fetcher_invocations")
        w = self.world
        per_row = [PerRowSink(s) for s in w.sinks]
        Fetcher(w.mappings, DatabaseSource(self.database), per_row, reject=reject).apply(changes)


class Queued(Design):
    name = "queued"

    def __init__(self, world: World, batch: int = BATCH) -> None:
        super().__init__(world)
        self.batch = batch

    def forward(self, changes: Sequence[Change]) -> None:  # QueueForwarder: one SendMessageBatch
        COUNTS.add("sqs_requests")
        with self.cond:
            self.pending.extend(changes)
            self.cond.notify()

    def take(self, block: bool) -> list[Change]:
        with self.cond:
            if not self.pending and block:
                self.cond.wait(0.05)
            batch, self.pending = self.pending[: self.batch], self.pending[self.batch :]
        if batch:
            COUNTS.add("sqs_requests", 2)  # the poller's ReceiveMessage, DeleteMessageBatch
        return batch

    def fetch(self, changes: list[Change]) -> None:
        COUNTS.add("fetcher_invocations")
        w = self.world
        Fetcher(w.mappings, DatabaseSource(self.database), w.sinks, reject=reject).apply(changes)


# --------------------------------------------------------------------------- runs


def keys_for(workload: str, n: int, rng: random.Random) -> list[int]:
    if workload == "hot-key":  # 10% of the keys get 90% of the changes
        hot = ROWS // 10
        return [rng.randint(1, hot) if rng.random() < 0.9 else rng.randint(hot + 1, ROWS) for _ in range(n)]
    return [rng.randint(1, ROWS) for _ in range(n)]


def per_thousand(counts: Counter[str], n: int) -> dict[str, float]:
    names = (
        "parser_invocations",
        "fetcher_invocations",
        "db_round_trips",
        "opensearch_requests",
        "dynamodb_requests",
        "sqs_requests",
    )
    return {name: round(counts.get(name, 0) * 1000 / n, 1) for name in names}


def throughput_run(design: Design, keys: list[int]) -> dict[str, Any]:
    """All changes submitted at once (a backlog), drained by one fetcher: sustained changes/s."""
    before = COUNTS.snapshot()
    stop = threading.Event()
    started = time.perf_counter()
    for serial, key in enumerate(keys):
        design.submit(key, serial)
    submitted = time.perf_counter()
    fetcher = threading.Thread(target=design.run_fetcher, args=(stop,))
    fetcher.start()
    stop.set()
    fetcher.join()
    elapsed = time.perf_counter() - started
    counts = COUNTS.snapshot() - before
    fetch_seconds = elapsed - (submitted - started)
    done = sorted(design.done_at.values())
    return {
        "changes": len(keys),
        "seconds": round(elapsed, 2),
        "changes_per_s": round(len(keys) / elapsed, 1),
        "per_1000_changes": per_thousand(counts, len(keys)),
        "fetcher_cpu_ms_per_1000": round(design.cpu_seconds * 1000 * 1000 / len(keys), 1),
        # wall time in the handlers' domain code (an estimate of billed duration, network to AWS aside)
        "parser_ms_per_invocation": round((submitted - started) * 1000 / len(keys), 3),
        "fetcher_ms_per_invocation": round(fetch_seconds * 1000 / max(1, counts["fetcher_invocations"]), 2),
        "completions_over_time": [round(t - started, 3) for t in done],
    }


def latency_run(design: Design, rng: random.Random) -> dict[str, Any]:
    """A steady STEADY_RATE changes/s: each row is updated and committed, then its trigger's invoke is
    submitted; latency is commit -> both sinks acknowledged (fetch finished)."""
    stop = threading.Event()
    fetcher = threading.Thread(target=design.run_fetcher, args=(stop,))
    fetcher.start()
    committed: dict[int, float] = {}
    total = STEADY_RATE * STEADY_SECONDS
    start = time.perf_counter()
    with design.world.writer.cursor() as cur:
        for serial in range(total):
            due = start + serial / STEADY_RATE
            time.sleep(max(0.0, due - time.perf_counter()))
            key = rng.randint(1, ROWS)
            cur.execute("UPDATE posts SET title = %s WHERE id = %s", (f"steady {serial}", key))
            committed[serial] = time.perf_counter()  # autocommit: committed when execute returns
            design.submit(key, serial)
    stop.set()
    fetcher.join()
    latencies = sorted((design.done_at[s] - t) * 1000 for s, t in committed.items())

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "rate": STEADY_RATE,
        "changes": total,
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "latencies_ms": [round(x, 2) for x in latencies],
    }


def memory_run(design: Design, keys: list[int]) -> float:
    """Peak Python heap (MiB) while the fetcher drains ``keys`` (tracemalloc: a separate, slower pass)."""
    for serial, key in enumerate(keys):
        design.submit(key, serial)
    tracemalloc.start()
    stop = threading.Event()
    stop.set()
    design.run_fetcher(stop)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / 2**20, 2)


def raw_rates(world: World, conn: Any, rng: random.Random) -> dict[str, float]:
    """Each local component alone, as fast as this process drives it."""
    rates: dict[str, float] = {}
    keys = [rng.randint(1, ROWS) for _ in range(2000)]
    started = time.perf_counter()
    with conn.cursor() as cur:
        for key in keys:
            cur.execute("SELECT * FROM posts WHERE id = %s", (key,))
            cur.fetchall()
    rates["mysql_pk_reads_per_s"] = round(len(keys) / (time.perf_counter() - started), 1)
    docs = 5000
    body: list[dict[str, Any]] = []
    for i in range(docs):
        body += [{"index": {"_index": world.index + "-raw", "_id": str(i)}}, {"title": f"t{i}", "body": "body " * 40}]
    started = time.perf_counter()
    for start in range(0, len(body), 1000):
        world.opensearch.bulk(body=body[start : start + 1000])
    rates["opensearch_bulk_docs_per_s"] = round(docs / (time.perf_counter() - started), 1)
    delete_index(world.opensearch, world.index + "-raw")
    client = world.table.meta.client
    items = 1000
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:  # as parallel as the sink writes
        list(
            pool.map(
                lambda i: client.put_item(TableName=world.table.name, Item={"pk": f"raw#{i}", "v": i}), range(items)
            )
        )
    rates["dynamodb_puts_per_s"] = round(items / (time.perf_counter() - started), 1)
    # the form the queued sink writes in: TransactWriteItems of 100 conditional Puts (one call at a time)
    condition = {
        "ConditionExpression": "attribute_not_exists(pk) OR #v <= :v",
        "ExpressionAttributeNames": {"#v": "_version"},
        "ExpressionAttributeValues": {":v": 1},
    }
    started = time.perf_counter()
    for start in range(0, items, 100):
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": world.table.name, "Item": {"pk": f"raw-tx#{i}", "_version": 1}, **condition}}
                for i in range(start, start + 100)
            ]
        )
    rates["dynamodb_transacted_items_per_s"] = round(items / (time.perf_counter() - started), 1)
    return rates


# What the queued path uses of each component: single puts are the per-row path's form, not its.
QUEUED_COMPONENTS = ("mysql_pk_reads_per_s", "opensearch_bulk_docs_per_s", "dynamodb_transacted_items_per_s")


def import_times() -> dict[str, float]:
    """Cold-start import time of each handler module (a fresh interpreter, median of 3), in ms."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}"}
    out: dict[str, float] = {}
    for handler in ("parser_fn", "fetcher_fn"):
        code = (
            f"import sys, time; sys.path.insert(0, {str(ROOT / handler)!r}); t = time.perf_counter(); import app; "
            "print((time.perf_counter() - t) * 1000)"
        )
        runs = [
            float(
                subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            )
            for _ in range(3)
        ]
        out[handler] = round(statistics.median(runs), 1)
    return out


# --------------------------------------------------------------------------- setup and report


def setup(cfg: LocalConfig) -> tuple[World, str]:

    db_name = create_database(cfg)
    settings = DatabaseSettings(cfg.db_host, cfg.db_port, db_name, cfg.db_user, cfg.db_password)
    writer = connect(settings)
    with writer.cursor() as cur:
        cur.execute((ROOT / "local" / "demo_schema.sql").read_text().split(";")[0])
        cur.executemany(
            "INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)",
            [(f"post {i}", "body " * 40, "bench") for i in range(ROWS)],
        )
    dynamodb, table = create_replica_table(cfg, db_name)
    count_dynamodb(dynamodb.meta.client)
    opensearch = make_client(cfg.opensearch_endpoint)
    count_opensearch(opensearch)
    posts = default_mappings().get("posts")
    assert posts is not None
    index = db_name.replace("_", "-")
    mapping = replace(posts, opensearch_index=index)
    sinks = [OpenSearchSink(opensearch), DynamoDBSink(table, tombstone_ttl_seconds=3600)]
    world = World(settings, Mappings({"posts": mapping}), sinks, writer, table, opensearch, index)
    return world, db_name


def teardown(cfg: LocalConfig, world: World, db_name: str) -> None:
    world.table.delete()
    delete_index(world.opensearch, world.index)
    drop_database(cfg, db_name)


def ratio(a: float, b: float) -> float:
    return round(a / b, 1) if b else float("inf")


def main() -> int:
    cfg = local_services()
    world, db_name = setup(cfg)
    rng = random.Random(6)
    # The fetcher's EMF metric lines (printed, as in Lambda) stay out of the report; their cost stays in.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    result: dict[str, Any] = {"rows": ROWS, "queued_batch_size": BATCH, "workloads": {}}
    try:
        Queued(world).fetch([Change("posts", (("id", k),), "update", 1, "0") for k in range(1, 201)])  # warm up
        for workload, n in WORKLOADS.items():
            keys = keys_for(workload, n, rng)
            runs = {}
            for design in (PerRow(world), Queued(world)):
                runs[design.name] = throughput_run(design, keys)
                print(
                    f"{workload:8} {design.name:8} {runs[design.name]['changes_per_s']:8.1f} changes/s", file=sys.stderr
                )
            result["workloads"][workload] = runs
        result["latency"] = {}
        for design in (PerRow(world), Queued(world, batch=10)):  # the template's default batch size
            result["latency"][design.name] = latency_run(design, rng)
            print(f"steady   {design.name:8} p99 {result['latency'][design.name]['p99_ms']} ms", file=sys.stderr)
        memory_keys = keys_for("uniform", 2000, rng)
        result["peak_fetcher_heap_mib"] = {d.name: memory_run(d, memory_keys) for d in (PerRow(world), Queued(world))}
        conn = connect(world.settings)
        result["raw_rates"] = raw_rates(world, conn, rng)
        result["import_ms"] = import_times()
    finally:
        teardown(cfg, world, db_name)
    slowest = min(result["raw_rates"][k] for k in QUEUED_COMPONENTS)
    for runs in result["workloads"].values():
        runs["queued_fraction_of_slowest_component"] = round(runs["queued"]["changes_per_s"] / slowest, 2)
    write_results(result)
    return 0


def write_results(result: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(result))
    for runs in slim["workloads"].values():
        for name in ("per-row", "queued"):
            runs[name].pop("completions_over_time")
    for run in slim["latency"].values():
        run.pop("latencies_ms")
    (OUT / "throughput.json").write_text(json.dumps(slim, indent=2) + "\n")
    lines = [
        "# Per-row design vs queued batches (one run, same rows and change streams)",
        "",
        f"{result['rows']} rows; throughput runs drain a backlog with one fetcher, queued batches of "
        f"{result['queued_batch_size']}; real MySQL 8.0.31, OpenSearch 2.19 and ministack DynamoDB, in process "
        "(see bench/bench_throughput.py for why).",
        "",
        "| workload | design | changes/s | fetcher invokes /1k | DB round trips /1k | OpenSearch req /1k "
        "| DynamoDB req /1k | SQS req /1k | fetcher CPU ms /1k |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, runs in result["workloads"].items():
        for name in ("per-row", "queued"):
            r = runs[name]
            k = r["per_1000_changes"]
            lines.append(
                f"| {workload} | {name} | {r['changes_per_s']} | {k['fetcher_invocations']} | {k['db_round_trips']} "
                f"| {k['opensearch_requests']} | {k['dynamodb_requests']} | {k['sqs_requests']} "
                f"| {r['fetcher_cpu_ms_per_1000']} |"
            )
        p, q = runs["per-row"], runs["queued"]
        pk, qk = p["per_1000_changes"], q["per_1000_changes"]
        lines.append(
            f"| {workload} | **ratio** | **{ratio(q['changes_per_s'], p['changes_per_s'])}×** "
            f"| **{ratio(pk['fetcher_invocations'], qk['fetcher_invocations'])}× fewer** "
            f"| **{ratio(pk['db_round_trips'], qk['db_round_trips'])}× fewer** "
            f"| **{ratio(pk['opensearch_requests'], qk['opensearch_requests'])}× fewer** "
            f"| {ratio(pk['dynamodb_requests'], qk['dynamodb_requests'])}× | | "
            f"{ratio(p['fetcher_cpu_ms_per_1000'], q['fetcher_cpu_ms_per_1000'])}× less |"
        )
    lines += ["", "Parser invocations are one per change in both designs (a trigger invokes the parser per row).", ""]
    lines += ["## Latency, commit → both sinks acknowledged, at a steady rate", ""]
    lines += ["| design | rate | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
    for name, r in result["latency"].items():
        lines.append(f"| {name} | {r['rate']}/s | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |")
    lines += ["", "The queued latency run uses the template's default FetchBatchSize (10) and window (0 s).", ""]
    raw = result["raw_rates"]
    slowest_name = min(QUEUED_COMPONENTS, key=lambda k: raw[k])
    lines += ["## The limit: each local component alone", "", "| component | rate |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in raw.items()]
    lines += [
        "",
        f"Slowest of the forms the queued path uses ({', '.join(QUEUED_COMPONENTS)}): {slowest_name}. "
        "Queued pipeline throughput as a fraction of it: "
        + ", ".join(
            f"{w} {runs['queued_fraction_of_slowest_component']:.0%}" for w, runs in result["workloads"].items()
        ),
        "",
    ]
    lines += ["## Memory and cold start", "", "| | per-row | queued |", "|---|---|---|"]
    heap = result["peak_fetcher_heap_mib"]
    lines.append(f"| peak fetcher Python heap, 2,000 changes (MiB) | {heap['per-row']} | {heap['queued']} |")
    lines += ["", "| handler | cold import ms (median of 3) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result["import_ms"].items()]
    (OUT / "throughput.md").write_text("\n".join(lines) + "\n")
    plot(result)
    print("\n".join(lines), file=sys.__stdout__)


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, r in result["latency"].items():
        left.hist(r["latencies_ms"], bins=50, alpha=0.6, label=f"{name} (p99 {r['p99_ms']} ms)")
    left.set_xlabel(f"commit → visible latency at {STEADY_RATE} changes/s (ms)")
    left.set_ylabel("changes")
    left.legend()
    burst = result["workloads"]["burst"]
    for name in ("per-row", "queued"):
        done = burst[name]["completions_over_time"]
        if not done:
            continue
        width = max(0.25, done[-1] / 40)
        buckets = Counter(int(t / width) for t in done)
        xs = [i * width for i in range(int(done[-1] / width) + 1)]
        right.plot(xs, [buckets.get(i, 0) / width for i in range(len(xs))], label=name)
    right.set_xlabel("seconds since the burst of 10,000 changes")
    right.set_ylabel("changes/s applied")
    right.legend()
    fig.tight_layout()
    fig.savefig(OUT / "throughput.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
