"""Faults while changes flow: each dependency of the fetcher is cut and restored, and nothing is lost.

The fetcher is the deployed code (fetcher_fn/app.py, its dependencies built from
the environment as in Lambda) over real services: MySQL 8.0 (a fresh schema), the
real OpenSearch node, DynamoDB and SQS on ministack. DynamoDB is reached
through :class:`FaultyEndpoint`, which can refuse connections or throttle; the
database connection is killed with ``KILL`` from another session (what a server
restart looks like to a client; the shared MySQL itself is never restarted);
the fetcher process is killed with SIGKILL between its two sink writes. Events
reach it as the fetch queue delivers them (:class:`QueueDelivery`: receives,
then the dead-letter queue), and dead letters are replayed with the
operators' redrive code (``fanout dlq redrive``).

Each test ends the same way: every row of the source is in both sinks exactly as
it is in the source, every deleted row is absent from both, and the sinks hold
nothing else (no duplicate, no resurrected row).

The sink outage of OpenSearch (its server process stopped, Lambda's real retries,
the dead-letter queue and a redrive) is tests/e2e/test_operations.py; the bridge
killed and restarted is tests/e2e/test_faults_e2e.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.model.change import Change
from fanout.model.mapping import DEFAULT_MAPPING_FILE, Mappings, default_mappings
from fanout.model.payloads import fetcher_event, parse_trigger_payload
from fanout.model.sink_keys import dynamodb_partition_key
from fanout.operations.verify import compare_row
from fanout.sinks.opensearch import make_client
from fanout_cli.dead_letters.invoke import InvokeResult
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.dead_letters.redrive import RedriveOutcome, redrive
from fanout_cli.stack_resources import StackResources
from tests.support.aws import aws_client, aws_resource
from tests.support.fault_injection import Context, FaultyEndpoint, QueueDelivery, queue_batch
from tests.support.files import ROOT, load_module, template_parameter_default, template_resource
from tests.support.indices import delete_index
from tests.support.locks import lock_waits

FETCHER_ARN = "arn:aws:lambda:us-east-1:000000000000:function:fanout-faults-fetcher"
RECEIVES = int(template_parameter_default("FetchMaxReceiveCount"))


@dataclass
class Pipeline:
    env: dict[str, str]
    app: Any
    mappings: Mappings
    source: pymysql.connections.Connection
    admin: pymysql.connections.Connection
    opensearch: Any
    table: Any
    sqs: Any
    dlq: DeadLetterQueue
    resources: StackResources
    dynamodb: FaultyEndpoint
    deliver: QueueDelivery
    rng: random.Random = field(default_factory=lambda: random.Random(8))
    keys: set[int] = field(default_factory=set)
    # sessions in the test's schema that are not the fetcher's: there before it connected, or the test's writers
    bystanders: set[int] = field(default_factory=set)
    writers: list[pymysql.connections.Connection] = field(default_factory=list)

    @property
    def posts(self) -> Any:
        return self.mappings.tables["posts"]

    # -- the application writes; its trigger's payload becomes a fetcher event as the parser makes it

    def event_for(self, key: int, action: str) -> dict[str, Any]:
        payload = {"v": 1, "action": action, "table": "posts", "pk": {"id": key}, "ts": time.time()}
        return fetcher_event(parse_trigger_payload(payload, self.mappings, f"faults-{uuid.uuid4().hex[:8]}"))

    def write(self) -> dict[str, Any]:
        """One application write (insert, update or delete of a random row); the fetcher event it causes."""
        live = sorted(self.live_keys())
        action = self.rng.choice(["insert", "update", "delete"] if len(live) > 2 else ["insert"])
        with self.source.cursor() as cur:
            if action == "insert":
                cur.execute(
                    "INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)",
                    (f"faults {uuid.uuid4().hex[:6]} — café", "body", "ann"),
                )
                key = int(cur.lastrowid)
            else:
                key = self.rng.choice(live)
                if action == "update":
                    cur.execute("UPDATE posts SET title = %s WHERE id = %s", (f"edited {uuid.uuid4().hex[:6]}", key))
                else:
                    cur.execute("DELETE FROM posts WHERE id = %s", (key,))
        self.keys.add(key)
        return self.event_for(key, action)

    def open_writer(self) -> pymysql.connections.Connection:
        """An application connection with a transaction of its own; rolled back and closed by the fixture."""
        writer = pymysql.connect(**_connect_args(self))
        self.writers.append(writer)
        self.bystanders.add(writer.thread_id())
        return writer

    def sessions_in_schema(self) -> set[int]:
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                (self.env["DB_NAME"],),
            )
            return {int(session_id) for (session_id,) in cur.fetchall()}

    def live_keys(self) -> set[int]:
        with self.source.cursor() as cur:
            cur.execute("SELECT id FROM posts")
            return {int(k) for (k,) in cur.fetchall()}

    # -- operators replay the dead-letter queue

    def redrive(self) -> list[RedriveOutcome]:
        def invoke(function: str, payload: Any) -> InvokeResult:
            assert function == self.resources.fetcher_function_name
            try:
                return InvokeResult(True, self.app.handler(payload, Context("redrive", FETCHER_ARN)))
            except Exception as exc:  # noqa: BLE001 - a failed redrive keeps the letter
                return InvokeResult(False, None, f"{type(exc).__name__}: {exc}")

        letters = self.dlq.hold_all(hold_seconds=60)
        results = redrive(letters, self.dlq, invoke, self.mappings, self.resources)
        return [r.outcome for r in results]

    # -- the end state

    def assert_sinks_equal_the_source(self) -> None:
        """Every key ever written: in both sinks as in the source, or absent from both; nothing else there."""
        for key in sorted(self.keys):
            comparison = compare_row(
                self.source, self.posts, Change("posts", (("id", key),), "update", 0), self.opensearch, self.table
            )
            assert comparison.agrees, (key, comparison.opensearch_problem, comparison.dynamodb_problem)
        live = self.live_keys()
        self.opensearch.indices.refresh(index=self.posts.opensearch.index)
        assert self.opensearch.count(index=self.posts.opensearch.index)["count"] == len(live)
        items = self.table.scan(ConsistentRead=True)["Items"]
        assert sorted(i["pk"] for i in items if not i.get("_deleted")) == sorted(f"posts#{k}" for k in live)
        assert {i["pk"] for i in items} <= {
            dynamodb_partition_key(Change("posts", (("id", k),), "", 0)) for k in self.keys
        }


@pytest.fixture
def pipeline(
    local_aws: dict[str, str],
    opensearch_endpoint: str,
    db_settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Pipeline]:
    suffix = uuid.uuid4().hex[:8]
    # The bundled mapping, pointed at an index of this test's own (the OpenSearch node is shared by the session).
    mapping = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    mapping["tables"]["posts"]["opensearch"]["index"] = f"posts-faults-{suffix}"
    (tmp_path / "tables.json").write_text(json.dumps(mapping), encoding="utf-8")

    spec = template_resource("ReplicaTable")
    table = aws_resource(local_aws, "dynamodb").create_table(
        TableName=f"fanout-faults-{suffix}",
        BillingMode=spec["BillingMode"],
        AttributeDefinitions=spec["AttributeDefinitions"],
        KeySchema=spec["KeySchema"],
    )
    table.wait_until_exists()
    sqs = aws_client(local_aws, "sqs")
    dlq_url = sqs.create_queue(QueueName=f"fanout-faults-dlq-{suffix}")["QueueUrl"]
    dynamodb = FaultyEndpoint(local_aws["AWS_ENDPOINT_URL"])

    env = local_aws | {
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url,  # the fetcher reaches DynamoDB through the faulty endpoint
        "DB_HOST": db_settings.host,
        "DB_PORT": str(db_settings.port),
        "DB_NAME": db_settings.name,
        "DB_USER": db_settings.user,
        "DB_PASSWORD": db_settings.password,
        "DB_TLS": "off",
        "DB_LOCK_WAIT_TIMEOUT": "1",
        "OPENSEARCH_ENDPOINT": opensearch_endpoint,
        "OPENSEARCH_AUTH": "none",
        "DYNAMODB_TABLE": table.name,
        "DEAD_LETTER_QUEUE_URL": dlq_url,
        "FETCH_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/fetch",  # continuations (none here)
        "FANOUT_MAPPING_FILE": str(tmp_path / "tables.json"),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)
    default_mappings.cache_clear()
    app = load_module("fetcher_fn/app.py", f"fetcher_app_faults_{suffix}")

    def connection() -> pymysql.connections.Connection:
        return pymysql.connect(
            host=db_settings.host,
            port=db_settings.port,
            user=db_settings.user,
            password=db_settings.password,
            database=db_settings.name,
            charset="utf8mb4",
            autocommit=True,
        )

    resources = StackResources(dlq_url, "fanout-faults-parser", "fanout-faults-fetcher", "/p", "/f")
    pipeline = Pipeline(
        env=env,
        app=app,
        mappings=default_mappings(),
        source=connection(),
        admin=connection(),
        opensearch=make_client(opensearch_endpoint),
        table=aws_resource(local_aws, "dynamodb").Table(table.name),
        sqs=sqs,
        dlq=DeadLetterQueue(sqs, dlq_url, resources),
        resources=resources,
        dynamodb=dynamodb,
        deliver=QueueDelivery(app.handler, FETCHER_ARN, RECEIVES, sqs, dlq_url),
    )
    pipeline.bystanders = pipeline.sessions_in_schema()  # the fetcher has not connected yet
    try:
        yield pipeline
    finally:
        for writer in pipeline.writers:
            if writer.open:
                writer.rollback()
                writer.close()
        if app._fetcher.cache_info().currsize:
            app._fetcher().source.close()
        dynamodb.close()
        pipeline.source.close()
        pipeline.admin.close()
        delete_index(pipeline.opensearch, pipeline.posts.opensearch.index)
        table.delete()
        sqs.delete_queue(QueueUrl=dlq_url)
        default_mappings.cache_clear()


def test_dynamodb_unreachable_while_changes_flow_then_restored_loses_nothing(pipeline: Pipeline) -> None:
    # Given changes flowing to both sinks
    assert all(pipeline.deliver(pipeline.write()) for _ in range(4))

    # When DynamoDB's endpoint refuses connections while the application keeps writing
    pipeline.dynamodb.cut()
    during = [pipeline.deliver(pipeline.write()) for _ in range(2)]

    # Then each of those changes failed every attempt (OpenSearch was written, DynamoDB not) and was dead-lettered
    assert during == [False, False]
    assert len(pipeline.deliver.failures) == 2 * RECEIVES
    assert all("dynamodb failed" in failure for failure in pipeline.deliver.failures)

    # When DynamoDB is back, changes flow again, and the dead letters are redriven
    pipeline.dynamodb.restore()
    assert all(pipeline.deliver(pipeline.write()) for _ in range(3))
    assert pipeline.redrive() == [RedriveOutcome.REPLAYED] * 2

    # Then both sinks hold exactly the source, and the queue is empty
    pipeline.assert_sinks_equal_the_source()
    assert pipeline.dlq.depth().total == 0


def test_dynamodb_throttling_is_absorbed_by_retries_and_a_sustained_one_is_redriven(pipeline: Pipeline) -> None:
    # Given a brief throttle (DynamoDB's ProvisionedThroughputExceededException, as DynamoDB sends it)
    pipeline.dynamodb.throttle(puts=2)

    # When a change is fetched, then Then the SDK's retries absorb it: delivered on the first attempt
    assert pipeline.deliver(pipeline.write())
    assert (pipeline.dynamodb.throttled, pipeline.deliver.attempts, pipeline.deliver.failures) == (2, 1, [])

    # When the throttling lasts through every attempt
    pipeline.dynamodb.throttle(puts=1000)
    assert not pipeline.deliver(pipeline.write())
    assert "ProvisionedThroughputExceededException" in pipeline.deliver.failures[-1]

    # Then once it ends, the change is redriven from the dead-letter queue, and the sinks agree with the source
    pipeline.dynamodb.throttle(puts=0)
    assert all(pipeline.deliver(pipeline.write()) for _ in range(3))
    assert pipeline.redrive() == [RedriveOutcome.REPLAYED]
    pipeline.assert_sinks_equal_the_source()


def fetcher_connection_id(pipeline: Pipeline, waiting_for_lock: bool) -> int:
    """The fetcher's session, as another session sees it: the one session in the test's schema that is no
    bystander (PROCESSLIST; a session just killed may linger a moment), and with ``waiting_for_lock`` one
    that performance_schema shows waiting for a row lock."""
    deadline = time.monotonic() + 10
    candidates: set[int] = set()
    while time.monotonic() < deadline:
        candidates = pipeline.sessions_in_schema() - pipeline.bystanders
        if waiting_for_lock:
            candidates = {session for session in candidates if lock_waits(pipeline.admin, session)}
        if len(candidates) == 1:
            return candidates.pop()
        time.sleep(0.05)
    raise AssertionError(f"the fetcher's database session was not found (candidates: {sorted(candidates)})")


def kill(pipeline: Pipeline, session_id: int) -> None:
    with pipeline.admin.cursor() as cur:
        cur.execute(f"KILL {int(session_id)}")


def test_the_fetchers_database_connection_killed_while_idle_or_mid_read_loses_nothing(pipeline: Pipeline) -> None:
    # Given a warm fetcher (its connection open and reused)
    assert pipeline.deliver(pipeline.write())
    idle = fetcher_connection_id(pipeline, waiting_for_lock=False)

    # When its connection is killed between invocations (what a database restart does to it)
    kill(pipeline, idle)

    # Then the next change is fetched on its first attempt, over a new connection
    assert pipeline.deliver(pipeline.write())
    assert (pipeline.deliver.attempts, pipeline.deliver.failures) == (2, [])
    assert fetcher_connection_id(pipeline, waiting_for_lock=False) != idle

    # Given a row changed by a transaction still open, so the fetcher's locking read waits on it
    key = sorted(pipeline.live_keys())[0]
    writer = pipeline.open_writer()
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'committed after the kill' WHERE id = %s", (key,))
    outcome: list[bool] = []
    delivery = threading.Thread(target=lambda: outcome.append(pipeline.deliver(pipeline.event_for(key, "update"))))
    delivery.start()

    # When the fetcher's connection is killed in the middle of that read, and the writer then commits
    reading = fetcher_connection_id(pipeline, waiting_for_lock=True)
    kill(pipeline, reading)
    writer.commit()
    delivery.join(timeout=60)

    # Then the read was repeated on a new connection within the same attempt, found the committed row,
    # and both sinks agree with the source
    assert outcome == [True]
    assert (pipeline.deliver.attempts, pipeline.deliver.failures) == (3, [])
    assert fetcher_connection_id(pipeline, waiting_for_lock=False) not in (idle, reading)
    pipeline.keys.add(key)
    pipeline.assert_sinks_equal_the_source()
    assert pipeline.opensearch.get(index=pipeline.posts.opensearch.index, id=str(key))["_source"]["title"] == (
        "committed after the kill"
    )


def _connect_args(pipeline: Pipeline) -> dict[str, Any]:
    env = pipeline.env
    return {
        "host": env["DB_HOST"],
        "port": int(env["DB_PORT"]),
        "user": env["DB_USER"],
        "password": env["DB_PASSWORD"],
        "database": env["DB_NAME"],
        "charset": "utf8mb4",
        "autocommit": False,
    }


def test_a_lock_wait_timeout_through_every_retry_ends_in_the_dead_letter_queue_and_is_redriven(
    pipeline: Pipeline,
) -> None:
    # Given a row held by an application transaction longer than the fetcher waits (DB_LOCK_WAIT_TIMEOUT=1)
    assert all(pipeline.deliver(pipeline.write()) for _ in range(3))
    key = sorted(pipeline.live_keys())[-1]
    writer = pipeline.open_writer()
    with writer.cursor() as cur:
        cur.execute("UPDATE posts SET title = 'held, then committed' WHERE id = %s", (key,))

    # When its change is fetched
    delivered = pipeline.deliver(pipeline.event_for(key, "update"))

    # Then every attempt timed out waiting (a retryable error, never taken for a delete), and it was dead-lettered
    assert not delivered
    assert len(pipeline.deliver.failures) == RECEIVES
    assert all("lock wait timeout" in f for f in pipeline.deliver.failures)
    assert pipeline.opensearch.get(index=pipeline.posts.opensearch.index, id=str(key))["found"]

    # When the transaction commits and the queue is redriven
    writer.commit()
    assert pipeline.redrive() == [RedriveOutcome.REPLAYED]

    # Then
    pipeline.assert_sinks_equal_the_source()


CHILD = """
import json, sys
sys.path[:0] = [{layer!r}, {root!r}]
from tests.support.files import load_module
from tests.support.fault_injection import Context
app = load_module("fetcher_fn/app.py", "fetcher_child")
app.handler(json.load(open(sys.argv[1])), Context("child", {arn!r}))
"""


def run_fetcher_process(pipeline: Pipeline, event_file: Path, kill_at_put: int | None) -> int:
    """Run the fetcher in a process of its own; SIGKILL it just before its ``kill_at_put``-th DynamoDB write."""
    script = CHILD.format(layer=str(ROOT / "layers" / "common"), root=str(ROOT), arn=FETCHER_ARN)
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(event_file)],
        env={**os.environ, **pipeline.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def kill_it(ordinal: int) -> bool:
        if ordinal == kill_at_put:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            return True  # the write never happens: the process died before sending it
        return False

    pipeline.dynamodb.before_put = kill_it if kill_at_put else None
    try:
        child.wait(timeout=50)
    finally:
        pipeline.dynamodb.before_put = None
    return child.returncode


def test_a_fetcher_killed_between_its_sink_writes_is_retried_and_converges(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given four new rows, and one fetcher event for all of them (an update that moved keys sends two, say)
    keys = []
    for _ in range(4):
        with pipeline.source.cursor() as cur:
            cur.execute("INSERT INTO posts (title, body, author) VALUES ('batch', 'b', 'a')")
            keys.append(int(cur.lastrowid))
    pipeline.keys.update(keys)
    changes = [c for k in keys for c in pipeline.event_for(k, "insert")["changes"]]
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(queue_batch({"changes": changes}, "m-killed")))
    writes = ("DynamoDB_20120810.PutItem", "DynamoDB_20120810.TransactWriteItems")
    before = sum(pipeline.dynamodb.operations.count(operation) for operation in writes)

    # When the fetcher process is killed (SIGKILL) just before its DynamoDB write
    returncode = run_fetcher_process(pipeline, event_file, kill_at_put=before + 1)

    # Then it died mid-batch: DynamoDB never got the batch (one TransactWriteItems, never sent); OpenSearch is
    # written side by side with it, so its _bulk may or may not have landed: the sinks disagree until the retry
    assert returncode == -signal.SIGKILL
    in_dynamodb = {k for k in keys if "Item" in pipeline.table.get_item(Key={"pk": f"posts#{k}"}, ConsistentRead=True)}
    assert in_dynamodb == set()

    # When the queue delivers the message again (a crashed runtime fails the batch) to a fresh process
    assert run_fetcher_process(pipeline, event_file, kill_at_put=None) == 0

    # Then both sinks hold every row once, as in the source
    pipeline.assert_sinks_equal_the_source()
