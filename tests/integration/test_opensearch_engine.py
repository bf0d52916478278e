"""What the real OpenSearch engine refuses, and what fanout does then.

The project once tested against a home-made imitation of OpenSearch that accepted all of the below. A real
node (2.19, local/opensearch.py) refuses each with HTTP 400; each test shows the refusal and that fanout
answers it as production must: the row is recorded in the dead-letter queue with the sink's reason, the
other rows of the batch and the other sink are still written, and nothing is retried forever.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy.exceptions import RequestError

from fanout.model.change import Change
from fanout.model.mapping import OPENSEARCH_METADATA_FIELDS, Mappings, TableMapping, parse_mappings
from fanout.model.sink_keys import dynamodb_key
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.sinks import Outcome, RowRejected
from fanout.sinks.opensearch import MAX_EXTERNAL_VERSION, OpenSearchSink, make_client
from fanout.sinks.readers import MAX_RESULT_WINDOW, SinkReaders
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from fanout.source.rows import RowState
from tests.support.aws import aws_client, aws_resource, dynamodb_sink
from tests.support.indices import delete_index
from tests.support.mappings import in_index

EDGES = """
CREATE TABLE edges (
    id INT NOT NULL PRIMARY KEY,
    label VARCHAR(40) NULL,
    doc JSON NULL,
    big BIGINT UNSIGNED NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4
"""
VERSION = 1_764_240_000_000_000


@pytest.fixture
def world(db_settings: Any, opensearch_endpoint: str, replica_table: Any, local_aws: dict[str, str]) -> Iterator[Any]:
    sqs = aws_client(local_aws, "sqs")
    queue = sqs.create_queue(QueueName=f"fanout-test-dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    conn = connect(db_settings)
    with conn.cursor() as cur:
        cur.execute(EDGES)
    mapping = in_index(
        parse_mappings({"tables": {"edges": {"primary_key": [{"column": "id"}], "json_columns": ["doc"]}}}).tables[
            "edges"
        ],
        f"edges-{uuid.uuid4().hex[:8]}",
    )
    client = make_client(opensearch_endpoint)
    yield {
        "db": conn,
        "mapping": mapping,
        "opensearch": client,
        "table": replica_table,
        "dynamodb": aws_resource(local_aws, "dynamodb"),
        "sqs": sqs,
        "queue": queue,
        "reject": QueueRejectRecorder(sqs, queue, source="fetcher"),
        "sinks": [OpenSearchSink(client), dynamodb_sink(replica_table, tombstone_ttl_seconds=3600)],
    }
    delete_index(client, mapping.opensearch.index)
    sqs.delete_queue(QueueUrl=queue)
    conn.close()


def insert(world: dict[str, Any], **columns: Any) -> Change:
    names = ", ".join(f"`{name}`" for name in columns)
    with world["db"].cursor() as cur:
        cur.execute(f"INSERT INTO edges ({names}) VALUES ({', '.join(['%s'] * len(columns))})", tuple(columns.values()))
    return Change("edges", (("id", columns["id"]),), "insert", VERSION, "req-engine")


def dead_letters(world: dict[str, Any]) -> list[dict[str, Any]]:
    got = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def outcomes_by_key(
    world: dict[str, Any], changes: list[Change], mapping: TableMapping | None = None
) -> dict[tuple[str, str], str]:
    """One fetcher invocation for the changes (one batch, the real reader); the outcome per (key, sink)."""
    conn = world["db"]
    mapping = mapping or world["mapping"]
    fetcher = Fetcher(Mappings({mapping.table: mapping}), DatabaseSource.over(conn), world["sinks"],
                      reject=world["reject"])  # fmt: skip
    report = fetcher.apply(changes)
    return {(o["key"], o["sink"]): o["outcome"] for o in report.outcomes}


def test_the_engine_takes_the_tombstone_lifetime_the_sink_creates_indices_with(world: dict[str, Any]) -> None:
    # When the sink creates its index (the first generation behind the alias)
    (index,) = world["sinks"][0].target_indices(world["mapping"])

    # Then the real engine kept index.gc_deletes as given (a setting it did not know would be a 400)
    settings = world["opensearch"].indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["gc_deletes"] == "1h"


def test_an_external_version_of_2_63_is_refused_by_the_engine_and_rejected_for_its_row_only(
    world: dict[str, Any],
) -> None:
    # Given the engine's own rule: external versions are Java longs
    index = world["mapping"].opensearch.index
    world["sinks"][0].target_indices(world["mapping"])  # created behind its alias, as the sink's first write does
    with pytest.raises(RequestError):
        world["opensearch"].index(
            index=index, id="probe", body={}, params={"version": 2**63, "version_type": "external_gte"}
        )
    assert MAX_EXTERNAL_VERSION == 2**63 - 1

    # When one row of a bulk carries a version above it (a database clock gone wrong) beside a valid one
    a, b = insert(world, id=1, label="a"), insert(world, id=2, label="b")
    results = world["sinks"][0].apply_batch(
        world["mapping"],
        [(a, RowState({"id": 1, "label": "a"}, 2**63)), (b, RowState({"id": 2, "label": "b"}, VERSION))],
    )

    # Then only that row is refused (the engine would have refused the whole request), and the other is written
    assert isinstance(results[0], RowRejected) and "2^63" in str(results[0])
    assert results[1] is Outcome.WRITTEN
    assert world["opensearch"].get(index=index, id="2")["_version"] == VERSION


def test_a_column_named_like_a_metadata_field_is_dead_lettered_until_the_mapping_renames_it(
    world: dict[str, Any],
) -> None:
    # Given the engine's rule: a document may not carry a metadata field such as `_id`
    index = world["mapping"].opensearch.index
    with pytest.raises(RequestError, match="metadata field"):
        world["opensearch"].index(index=index, id="probe", body={"_id": "x"})
    # and fanout's list of such names covers every one this engine refuses
    candidates = OPENSEARCH_METADATA_FIELDS | {"_x", "_all", "_uid", "_parent", "_timestamp", "_ttl", "_score"}
    refused = set()
    for name in sorted(candidates):
        try:
            world["opensearch"].index(index=index, id="probe", body={name: 1})
        except RequestError:
            refused.add(name)
    assert "_id" in refused and refused <= OPENSEARCH_METADATA_FIELDS
    world["opensearch"].indices.delete(index=index)

    # When a table with a column `_id` is replicated
    with world["db"].cursor() as cur:
        cur.execute("CREATE TABLE reserved (id INT NOT NULL PRIMARY KEY, `_id` VARCHAR(20) NULL) ENGINE = InnoDB")
        cur.execute("INSERT INTO reserved VALUES (1, 'x')")
    spec: dict[str, Any] = {"primary_key": [{"column": "id"}]}
    mapping = in_index(parse_mappings({"tables": {"reserved": spec}}).tables["reserved"], index)
    change = Change("reserved", (("id", 1),), "insert", VERSION, "req-engine")
    outcomes = outcomes_by_key(world, [change], mapping)

    # Then OpenSearch refused it with a reason that says what to do, DynamoDB took it, the DLQ has it once
    assert outcomes == {("1", "opensearch"): "rejected", ("1", "dynamodb"): "written"}
    [record] = dead_letters(world)
    assert record["reason"].startswith("opensearch: ") and "rename or exclude it in the mapping" in record["reason"]

    # And once the mapping renames the column, the row is written
    spec["opensearch"] = {"rename": {"_id": "source_id"}}
    renamed = in_index(parse_mappings({"tables": {"reserved": spec}}).tables["reserved"], index)
    assert outcomes_by_key(world, [change], renamed)[("1", "opensearch")] == "written"
    assert world["opensearch"].get(index=index, id="1")["_source"] == {"id": 1, "source_id": "x"}


def test_a_json_column_whose_shape_changes_between_rows_is_dead_lettered_per_row(world: dict[str, Any]) -> None:
    # Given an index that mapped `doc` as an object from a first row
    first = insert(world, id=1, doc='{"x": 1}')
    assert outcomes_by_key(world, [first])[("1", "opensearch")] == "written"

    # When later rows carry a plain string there and a number where a string was mapped, beside a good row
    shape = insert(world, id=2, doc='"just text"')
    typed = insert(world, id=3, doc='{"x": "not a number"}')
    good = insert(world, id=4, doc='{"x": 4}')
    outcomes = outcomes_by_key(world, [shape, typed, good])

    # Then each clashing row is refused alone, the good one written, DynamoDB (schemaless) took them all
    assert {k: v for k, v in outcomes.items() if k[1] == "opensearch"} == {
        ("2", "opensearch"): "rejected",
        ("3", "opensearch"): "rejected",
        ("4", "opensearch"): "written",
    }
    assert all(v == "written" for k, v in outcomes.items() if k[1] == "dynamodb")
    reasons = sorted(record["reason"] for record in dead_letters(world))
    assert len(reasons) == 2 and all("mapper_parsing_exception" in reason for reason in reasons)


def test_an_empty_json_key_is_refused_by_both_sinks_and_recorded(world: dict[str, Any]) -> None:
    # Given a JSON object with an empty key: OpenSearch refuses an empty field name, DynamoDB an empty map key
    change = insert(world, id=1, doc='{"": 1}')

    # When
    outcomes = outcomes_by_key(world, [change])

    # Then both sinks refused it and each reason is recorded
    assert outcomes == {("1", "opensearch"): "rejected", ("1", "dynamodb"): "rejected"}
    reasons = " | ".join(record["reason"] for record in dead_letters(world))
    assert "opensearch: " in reasons and "dynamodb: " in reasons


def test_bigint_unsigned_above_a_long_needs_an_unsigned_long_mapping(world: dict[str, Any]) -> None:
    # Given dynamic mapping, which makes `big` a long
    index = world["mapping"].opensearch.index
    top = insert(world, id=1, big=2**64 - 1)

    # When the largest BIGINT UNSIGNED arrives, the engine refuses it: the row is dead-lettered, DynamoDB has it
    assert outcomes_by_key(world, [top]) == {("1", "opensearch"): "rejected", ("1", "dynamodb"): "written"}
    [record] = dead_letters(world)
    assert "mapper_parsing_exception" in record["reason"]

    # And with the mapping the README recommends (unsigned_long), created before the sink writes, it is exact
    delete_index(world["opensearch"], index)
    world["opensearch"].indices.create(
        index=index, body={"mappings": {"properties": {"big": {"type": "unsigned_long"}}}}
    )
    world["sinks"][0] = OpenSearchSink(world["opensearch"])
    assert outcomes_by_key(world, [top])[("1", "opensearch")] == "written"
    assert world["opensearch"].get(index=index, id="1")["_source"]["big"] == 2**64 - 1


def test_reconcile_never_asks_for_more_hits_than_the_result_window(world: dict[str, Any]) -> None:
    # Given the engine's window: one search returns at most index.max_result_window (10,000) hits
    index = world["mapping"].opensearch.index
    world["sinks"][0].target_indices(world["mapping"])  # created behind its alias, as the sink's first write does
    with pytest.raises(RequestError, match="Result window is too large"):
        world["opensearch"].search(index=index, body={"size": MAX_RESULT_WINDOW + 1})
    for key in range(1, 4):
        world["opensearch"].index(index=index, id=str(key), body={"id": key}, refresh=True)

    # When reconcile samples more documents than the window holds, and pages through all ids
    readers = SinkReaders(world["opensearch"], world["dynamodb"], world["table"].name)
    sampled = [doc_id for page in readers.random_document_ids(world["mapping"], 50_000, 500) for doc_id, _ in page]
    listed = [doc_id for page in readers.document_ids(world["mapping"], 2) for doc_id, _ in page]

    # Then the engine answered both (a request over the window would have raised)
    assert sorted(sampled) == ["1", "2", "3"]
    assert listed == ["1", "2", "3"]


def test_a_frozen_node_fails_the_fetch_for_a_retry_and_the_retry_after_it_thaws_applies_it(
    world: dict[str, Any], opensearch_endpoint: str
) -> None:
    from opensearchpy import OpenSearch

    from local.processes import running_pid

    pid = running_pid("opensearch")
    assert pid is not None, "this test freezes the local node: it needs the one this checkout starts"
    # Given a sink whose client waits 2 s for an answer (the deployed one: 10 s, 2 retries), an index in place
    client = OpenSearch(hosts=[opensearch_endpoint], timeout=2, max_retries=0)
    world["sinks"][0] = OpenSearchSink(client)
    world["sinks"][0].target_indices(world["mapping"])
    change = insert(world, id=1, label="written while frozen")

    # When the node is frozen (SIGSTOP: it holds its connections and answers nothing) during a fetch
    os.killpg(pid, signal.SIGSTOP)
    try:
        with pytest.raises(FetchFailed, match="opensearch"):
            outcomes_by_key(world, [change])
        # Then the fetch failed (to be retried), after DynamoDB was written all the same
        item = world["table"].get_item(Key=dynamodb_key(world["mapping"], change), ConsistentRead=True)["Item"]
        assert item["label"] == "written while frozen"
    finally:
        os.killpg(pid, signal.SIGCONT)

    # And the retry once it thaws writes OpenSearch; a timeout is no rejection: the dead-letter queue is empty
    assert outcomes_by_key(world, [change])[("1", "opensearch")] == "written"
    assert client.get(index=world["mapping"].opensearch.index, id="1")["_source"]["label"] == "written while frozen"
    assert dead_letters(world) == []


def test_an_index_the_sink_creates_gets_the_mappings_the_table_declares(world: dict[str, Any]) -> None:
    # Given a mapping that declares its JSON column as not indexed (its shape varies between rows)
    spec = {"primary_key": [{"column": "id"}], "json_columns": ["doc"]}
    spec["opensearch"] = {"index_mappings": {"properties": {"doc": {"type": "object", "enabled": False}}}}
    mapping = in_index(parse_mappings({"tables": {"edges": spec}}).tables["edges"], f"decl-{uuid.uuid4().hex[:8]}")
    changes = [
        insert(world, id=1, doc='{"x": 1}'),
        insert(world, id=2, doc='"text"'),
        insert(world, id=3, doc="[1, 2]"),
    ]

    # When rows of three shapes are replicated into the index the sink creates
    try:
        outcomes = outcomes_by_key(world, changes, mapping)

        # Then the engine took every one (under dynamic mapping it refuses two, as the test above shows)
        assert set(outcomes.values()) == {"written"}
        (mappings,) = world["opensearch"].indices.get_mapping(index=mapping.opensearch.index).values()  # its generation
        assert mappings["mappings"]["properties"]["doc"] == {
            "type": "object",
            "enabled": False,
        }
        assert world["opensearch"].get(index=mapping.opensearch.index, id="2")["_source"]["doc"] == "text"
    finally:
        delete_index(world["opensearch"], mapping.opensearch.index)


def test_the_tests_talk_to_the_real_engine_at_the_pinned_version(opensearch_endpoint: str) -> None:
    from local import opensearch as local_opensearch

    # GET / of the endpoint every test and the demo use (unless OPENSEARCH_ENDPOINT names another real cluster)
    answer = make_client(opensearch_endpoint).info()
    assert answer["version"]["distribution"] == "opensearch"
    if not os.environ.get("OPENSEARCH_ENDPOINT"):
        assert answer["version"]["number"] == local_opensearch.VERSION == "2.19.6"
        assert answer["version"]["build_type"] == "zip"
