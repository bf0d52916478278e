"""Values and keys at the sinks' edges, through MySQL 8.0, the fetch path, a real OpenSearch node and ministack.

- numbers from 1e38 up to DynamoDB's bounds and beyond: readable by boto3, exact, and reconcile survives
  an item an older version wrote as N (issue 15);
- a number with more digits than a double: JSON text in a TEXT column (``json_columns``) reaches both sinks
  with every digit; MySQL's JSON type stores it as a double, so what fanout reads and writes is the double;
- keys longer than a sink id (60 CJK characters in a VARCHAR(64), a composite key of two VARCHAR(255)):
  accepted, replicated under a bounded id that keeps the full key, checked and repaired by reconcile;
- a row above DynamoDB's item size is reported by reconcile as refused, with its reason, and
  ``--repair`` records no further dead letter for it.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import FULL_KEY_FIELD, Mappings, parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.reconcile import ReconcileReport, SinkReaders, reconcile
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.aws import aws_client, aws_resource, dynamodb_sink
from tests.support.indices import delete_index
from tests.support.integration import create_replica_table, fetch
from tests.support.mappings import in_index

TABLES = [
    "CREATE TABLE wide_numbers (id INT NOT NULL PRIMARY KEY, d DOUBLE NULL, j JSON NULL, t TEXT NULL)",
    "CREATE TABLE cjk_keys (name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, note TEXT NULL)",
    "CREATE TABLE pair_keys (a VARCHAR(255) COLLATE utf8mb4_bin NOT NULL, b VARCHAR(255) COLLATE utf8mb4_bin "
    "NOT NULL, note TEXT NULL, PRIMARY KEY (a, b))",
    "CREATE TABLE big_rows (id INT NOT NULL PRIMARY KEY, data LONGBLOB NOT NULL)",
]
PI = "3.141592653589793238462643383279"
PI_DOUBLE = "3.141592653589793"  # what MySQL's JSON type keeps of PI: a double (shortest form)


@dataclass
class World:
    settings: DatabaseSettings
    conn: Any
    mappings: Mappings
    opensearch: Any
    endpoint: str
    table: Any
    plain_dynamodb: Any  # a boto3 client without the resource layer: writes what an older version wrote
    sqs: Any
    queue: str
    dynamodb: Any  # the boto3 resource reconcile reads with

    @property
    def sinks(self) -> list[Any]:
        return [OpenSearchSink(self.opensearch), dynamodb_sink(self.table, tombstone_ttl_seconds=3600)]

    @property
    def reject(self) -> QueueRejectRecorder:
        return QueueRejectRecorder(self.sqs, self.queue, source="fetcher")

    def execute(self, sql: str, params: Any = ()) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def replicate(self, change: Change) -> dict[str, str]:
        mapping = self.mappings.tables[change.table]
        report = fetch(self.settings, mapping, change, self.sinks, self.reject)
        self.opensearch.indices.refresh(index=mapping.opensearch.index)
        return {o["sink"]: o["outcome"] for o in report.outcomes}

    def reconcile(self, tables: list[str], **options: Any) -> ReconcileReport:
        for name in tables:
            self.opensearch.indices.refresh(index=self.mappings.tables[name].opensearch.index, ignore=[404])
        readers = SinkReaders(self.opensearch, self.dynamodb, self.table.name)
        if options.get("repair"):
            options.update(
                fetcher=Fetcher(self.mappings, DatabaseSource.over(self.conn), self.sinks, reject=self.reject)
            )
        return reconcile(self.conn, self.mappings, readers, tables=tables, page_size=50, **options)

    def dead_letters(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.fixture
def world(db_settings: DatabaseSettings, opensearch_endpoint: str, local_aws: dict[str, str]) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    spec = {
        "wide_numbers": {"primary_key": [{"column": "id"}], "json_columns": ["t"]},  # j: JSON type, detected
        "cjk_keys": {"primary_key": [{"column": "name", "type": "string"}]},
        "pair_keys": {"primary_key": [{"column": "a", "type": "string"}, {"column": "b", "type": "string"}]},
        "big_rows": {"primary_key": [{"column": "id"}], "opensearch": {"binary": "exclude"}},
    }
    parsed = parse_mappings({"tables": spec})
    mappings = Mappings({n: in_index(m, f"{n.replace('_', '-')}-{suffix}") for n, m in parsed.tables.items()})
    conn = connect(db_settings)
    for sql in TABLES:
        with conn.cursor() as cur:
            cur.execute(sql)
    sqs = aws_client(local_aws, "sqs")
    queue = sqs.create_queue(QueueName=f"fanout-test-dlq-{suffix}")["QueueUrl"]
    table = create_replica_table(local_aws)
    client = make_client(opensearch_endpoint)
    # DOUBLE as the README recommends: dynamic mapping would make it a float, which refuses 1.5e100
    wide_index = mappings.tables["wide_numbers"].opensearch.index
    client.indices.create(index=wide_index, body={"mappings": {"properties": {"d": {"type": "double"}}}})
    plain = aws_client(local_aws, "dynamodb")
    resource = aws_resource(local_aws, "dynamodb")
    try:
        yield World(db_settings, conn, mappings, client, opensearch_endpoint, table, plain, sqs, queue, resource)
    finally:
        conn.close()
        for m in mappings.tables.values():
            delete_index(client, m.opensearch.index)
        table.delete()
        sqs.delete_queue(QueueUrl=queue)


def change(table: str, **key: Any) -> Change:
    return Change(table, tuple(key.items()), "insert", 1_764_240_000_000_000, "req-15")


DOCUMENT = f'{{"pi": {PI}, "big": 1e38, "n": 12}}'
WIDE = {  # id: (DOUBLE, JSON, JSON as TEXT, what DynamoDB holds for the DOUBLE)
    1: (1e38, None, None, "1E+38"),
    2: (1.5e100, None, None, "1.5E+100"),
    3: (1e126, None, None, "1E+126"),
    4: (1e-131, None, None, "1E-131"),
    5: (None, DOCUMENT, DOCUMENT, None),
}


def insert_wide(world: World) -> None:
    for key, (double, document, text, _) in WIDE.items():
        world.execute("INSERT INTO wide_numbers VALUES (%s, %s, %s, %s)", (key, double, document, text))
        assert world.replicate(change("wide_numbers", id=key)) == {"opensearch": "written", "dynamodb": "written"}


def test_numbers_up_to_and_beyond_dynamodbs_bounds_are_written_readable_and_reconciled(world: World) -> None:
    # Given DOUBLE values from 1e38 to beyond DynamoDB's range, and a JSON column with such numbers
    insert_wide(world)  # (every row is written to both sinks: none refused)
    mapping = world.mappings.tables["wide_numbers"]

    # Then boto3's usual resource API reads every item (no decimal.Rounded), with the exact values
    for key, (_, _, _, held) in WIDE.items():
        item = world.table.get_item(Key=dynamodb_key(mapping, change("wide_numbers", id=key)), ConsistentRead=True)
        assert item["Item"].get("d") == held
    json_item = world.table.get_item(Key={"pk": "wide_numbers#5"}, ConsistentRead=True)["Item"]
    assert json_item["t"] == {"pi": Decimal(PI), "big": "1E+38", "n": Decimal(12)}
    assert json_item["j"] == {"pi": Decimal(PI_DOUBLE), "big": "1E+38", "n": Decimal(12)}

    # And reconcile checks every row of both sinks and finds them in agreement
    report = world.reconcile(["wide_numbers"])
    assert report.agrees, report.summary()
    assert {s: t.checked for s, t in report.tables["wide_numbers"].items()} == {"opensearch": 5, "dynamodb": 5}


def test_an_item_an_older_version_wrote_as_a_39_digit_number_does_not_blind_reconcile(world: World) -> None:
    # Given the rows, and one item rewritten as an older version wrote it: N 1E+38, read back as 39 digits
    insert_wide(world)
    world.plain_dynamodb.put_item(
        TableName=world.table.name,
        Item={
            "pk": {"S": "wide_numbers#1"},
            "id": {"N": "1"},
            "d": {"N": "1E+38"},
            "j": {"NULL": True},
            "_table": {"S": "wide_numbers"},
            "_version": {"N": "1"},
            "_deleted": {"BOOL": False},
        },
    )

    # When reconcile runs: it does not die, it checks every row and reports that one as stale
    report = world.reconcile(["wide_numbers"])
    dynamodb = report.tables["wide_numbers"]["dynamodb"]
    assert (dynamodb.checked, dynamodb.stale, dynamodb.missing) == (5, 1, 0), report.summary()
    assert dynamodb.examples["stale"][0]["key"] == [1]
    assert report.tables["wide_numbers"]["opensearch"].drift == 0

    # And a repair rewrites it in the readable form
    assert world.reconcile(["wide_numbers"], repair=True).agrees
    assert world.table.get_item(Key={"pk": "wide_numbers#1"}, ConsistentRead=True)["Item"]["d"] == "1E+38"
    assert world.reconcile(["wide_numbers"]).agrees


def test_json_text_keeps_every_digit_mysqls_json_type_a_doubles_and_reconcile_sees_lost_digits(world: World) -> None:
    # Given a number with more digits than a double, written as JSON text into a TEXT column listed in
    # json_columns and into a column of MySQL's JSON type, replicated
    insert_wide(world)
    mapping = world.mappings.tables["wide_numbers"]

    # Then from the TEXT column, the document's source holds the number with all its digits, as the item does
    url = f"{world.endpoint}/{mapping.opensearch.index}/_doc/5"
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the local node
        source = json.loads(answer.read(), parse_float=Decimal)["_source"]  # the stored text, digit by digit
    assert str(source["t"]["pi"]) == PI, source
    item = world.table.get_item(Key={"pk": "wide_numbers#5"}, ConsistentRead=True)["Item"]
    assert str(item["t"]["pi"]) == PI
    assert world.opensearch.get(index=mapping.opensearch.index, id="5")["_source"]["t"]["pi"] == Decimal(PI)

    # And from the JSON column, both sinks hold the double MySQL stored: the digits were gone at the INSERT
    with world.conn.cursor() as cur:
        cur.execute("SELECT JSON_EXTRACT(j, '$.pi') FROM wide_numbers WHERE id = 5")
        assert cur.fetchone()[0] == PI_DOUBLE
    assert str(source["j"]["pi"]) == PI_DOUBLE, source
    assert str(item["j"]["pi"]) == PI_DOUBLE

    # And when a document loses those digits (a float on the way), reconcile reports it as stale
    damaged = json.dumps(
        {"id": 5, "d": None, "j": {"pi": float(PI), "big": 1e38, "n": 12}, "t": {"pi": float(PI), "big": 1e38, "n": 12}}
    )
    world.opensearch.index(
        index=mapping.opensearch.index, id="5", body=damaged, params={"version": 2**62, "version_type": "external"}
    )
    report = world.reconcile(["wide_numbers"])
    opensearch = report.tables["wide_numbers"]["opensearch"]
    assert opensearch.stale == 1 and "['t']" in opensearch.examples["stale"][0]["detail"], report.summary()


def test_keys_longer_than_a_sink_id_are_replicated_under_a_bounded_id_and_reconciled(world: World) -> None:
    # Given a 60-character CJK key (540 bytes encoded) and a composite key of two long values
    name = "漢字" * 30
    a, b = "😀" * 255, "鍵" * 255
    world.execute("INSERT INTO cjk_keys VALUES (%s, 'cjk')", (name,))
    world.execute("INSERT INTO pair_keys VALUES (%s, %s, 'pair')", (a, b))

    # When the triggers' payloads are parsed and the changes fetched
    for table, pk in (("cjk_keys", {"name": name}), ("pair_keys", {"a": a, "b": b})):
        payload = {"v": 1, "action": "insert", "table": table, "pk": pk, "ts": 1764240000}
        [parsed] = parse_trigger_payload(payload, world.mappings, "req-15")
        assert world.replicate(parsed) == {"opensearch": "written", "dynamodb": "written"}

    # Then both sinks hold each row under a bounded id, with the full key kept beside it
    for table, ch in (("cjk_keys", change("cjk_keys", name=name)), ("pair_keys", change("pair_keys", a=a, b=b))):
        mapping = world.mappings.tables[table]
        doc_id = opensearch_document_id(mapping, ch)
        assert len(doc_id.encode()) <= 512 and "{v1-sha256:" in doc_id
        document = world.opensearch.get(index=mapping.opensearch.index, id=doc_id)["_source"]
        assert document[FULL_KEY_FIELD] == ch.document_id
        key = dynamodb_key(mapping, ch)
        assert world.table.get_item(Key=key, ConsistentRead=True)["Item"]["note"] in ("cjk", "pair")
    pair_key = dynamodb_key(world.mappings.tables["pair_keys"], change("pair_keys", a=a, b=b))
    assert len(pair_key["pk"].encode()) <= 2048 and "{v1-sha256:" in pair_key["pk"]

    # And reconcile checks them (none skipped), finds no orphan among the hashed ids...
    tables = ["cjk_keys", "pair_keys"]
    report = world.reconcile(tables)
    assert report.agrees, report.summary()
    for table in tables:
        assert {s: t.checked for s, t in report.tables[table].items()} == {"opensearch": 1, "dynamodb": 1}

    # ...and when the rows go from the source without a change reaching the sinks, finds and repairs the orphans
    world.execute("DELETE FROM cjk_keys")
    world.execute("DELETE FROM pair_keys")
    report = world.reconcile(tables)
    for table in tables:
        assert {s: t.orphan for s, t in report.tables[table].items()} == {"opensearch": 1, "dynamodb": 1}
    assert report.tables["cjk_keys"]["opensearch"].examples["orphan"][0]["key"] == [name]
    assert world.reconcile(tables, repair=True).agrees
    assert world.reconcile(tables).agrees


def test_a_row_dynamodb_can_never_take_is_reported_refused_and_repair_adds_no_dead_letter(world: World) -> None:
    # Given a row above DynamoDB's 400 KB item size, fetched once: one dead letter, OpenSearch written
    world.execute("INSERT INTO big_rows VALUES (1, %s)", (b"\x01" * (450 * 1024),))
    assert world.replicate(change("big_rows", id=1)) == {"opensearch": "written", "dynamodb": "rejected"}

    # When reconcile runs, then with --repair twice
    report = world.reconcile(["big_rows"])
    repaired = [world.reconcile(["big_rows"], repair=True) for _ in range(2)]

    # Then the row is reported as refused, with the reason, not as repairable drift
    for run in (report, *repaired):
        dynamodb = run.tables["big_rows"]["dynamodb"]
        assert (dynamodb.checked, dynamodb.missing, dynamodb.refused, dynamodb.unrepaired) == (1, 0, 1, 0)
        assert "400 KB" in dynamodb.examples["refused"][0]["detail"]
        assert run.tables["big_rows"]["opensearch"].drift == 0
        assert not run.agrees and "1 refused" in run.summary()
    # and the dead-letter queue still holds the one record of the fetch
    letters = world.dead_letters()
    assert len(letters) == 1 and "400 KB" in letters[0]["reason"]


class FailingOnce(SinkReaders):
    """The real readers, but the first BatchGetItem of the run fails (DynamoDB unreachable for a moment)."""

    failed = False

    def items(self, mapping: Any, keys: Any) -> list[dict[str, Any]]:
        if not self.failed:
            self.failed = True
            raise ConnectionError("DynamoDB endpoint unreachable")
        return super().items(mapping, keys)


def test_a_page_reconcile_cannot_read_is_counted_unchecked_and_the_run_goes_on(world: World) -> None:
    # Given five rows in agreement
    insert_wide(world)
    world.opensearch.indices.refresh(index=world.mappings.tables["wide_numbers"].opensearch.index)

    # When reconcile runs in pages of two and the first DynamoDB read fails
    readers = FailingOnce(world.opensearch, world.dynamodb, world.table.name)
    report = reconcile(world.conn, world.mappings, readers, tables=["wide_numbers"], page_size=2)

    # Then the rows of that page are counted as unchecked, with the reason, and the others are checked
    dynamodb = report.tables["wide_numbers"]["dynamodb"]
    assert (dynamodb.checked, dynamodb.unchecked, dynamodb.drift) == (5, 2, 0), report.summary()
    assert [e["key"] for e in dynamodb.examples["unchecked"]] == [[1], [2]]
    assert "unreachable" in dynamodb.examples["unchecked"][0]["detail"]
    assert report.tables["wide_numbers"]["opensearch"].checked == 5
    assert not report.agrees and "2 unchecked" in report.summary()


def test_a_row_the_index_refuses_during_a_repair_is_reported_refused_without_a_new_dead_letter(world: World) -> None:
    # Given an index whose mapping refuses the row's text (the note field is an integer there), and the
    # row fetched once: OpenSearch refused it (HTTP 400), one dead letter
    index = world.mappings.tables["cjk_keys"].opensearch.index
    world.opensearch.indices.create(index=index, body={"mappings": {"properties": {"note": {"type": "integer"}}}})
    world.execute("INSERT INTO cjk_keys VALUES ('k', 'not a number')")
    assert world.replicate(change("cjk_keys", name="k")) == {"opensearch": "rejected", "dynamodb": "written"}

    # When reconcile runs (it cannot know the index will refuse it: missing), then repairs twice
    found = world.reconcile(["cjk_keys"]).tables["cjk_keys"]["opensearch"]
    repairs = [world.reconcile(["cjk_keys"], repair=True) for _ in range(2)]

    # Then each repair reports the row as refused with OpenSearch's reason, not as unrepaired
    assert found.missing == 1
    for run in repairs:
        opensearch = run.tables["cjk_keys"]["opensearch"]
        assert (opensearch.refused, opensearch.repaired, opensearch.unrepaired) == (1, 0, 0), run.summary()
        assert "mapper_parsing_exception" in opensearch.examples["refused"][0]["detail"]
        assert not run.agrees
    # and the dead-letter queue holds only the fetch's record
    assert len(world.dead_letters()) == 1
