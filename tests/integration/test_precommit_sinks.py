"""Pre-commit invokes, end to end through the fetch path: MySQL 8.0, the real reader, both real sinks.

Aurora's lambda_async fires inside the writer's statement, before COMMIT, and
a ROLLBACK does not take it back. Here a writer holds its transaction open
while a fetcher (the Fetcher over the locking reader, the OpenSearch sink on
the project's server and the DynamoDB sink on ministack) runs for the changed
key, and is seen waiting on the writer's row lock (performance_schema.data_lock_waits);
then the writer commits or rolls back. Whatever it did, both sinks must end with
the state the database kept. A reader that did not wait for the writer (a plain
SELECT) fails every one of these: it is never seen waiting, and it would replicate
the old value, a row that never existed, or a delete that never happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.verify import compare_row
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.integration import FetchInThread, fetch, lock_waits
from tests.support.mappings import in_index
from tests.support.waiting import wait_until

WAIT_SECONDS = 30.0


@pytest.fixture
def world(db_settings: Any, opensearch_endpoint: str, replica_table: Any) -> Iterator[dict[str, Any]]:
    """The posts and tenant_settings mappings on a fresh index each, the real sinks, a writer connection."""
    client = make_client(opensearch_endpoint)
    suffix = uuid.uuid4().hex[:8]
    mappings = {
        name: in_index(default_mappings().tables[name], f"precommit-{name.replace('_', '-')}-{suffix}")
        for name in ("posts", "tenant_settings")
    }
    writer, db = connect(db_settings, autocommit=False), connect(db_settings)
    yield {
        "settings": db_settings,
        "mappings": mappings,
        "sinks": [OpenSearchSink(client), dynamodb_sink(replica_table, tombstone_ttl_seconds=3600)],
        "opensearch": client,
        "table": replica_table,
        "writer": writer,
        "db": db,
    }
    writer.close()
    db.close()
    for mapping in mappings.values():
        delete_index(client, mapping.opensearch.index)


def post_change(key: int) -> Change:
    return Change("posts", (("id", key),), "update", 1_764_240_000_000_000)


def setting_change(tenant: str, setting_key: str) -> Change:
    key = (("tenant", tenant), ("setting_key", setting_key))
    return Change("tenant_settings", key, "update", 1_764_240_000_000_000)


def sink_state(world: dict[str, Any], table: str, change: Change) -> tuple[Any, Any]:
    """(OpenSearch _source or None, DynamoDB item or None) for the change's key."""
    from opensearchpy.exceptions import NotFoundError

    mapping = world["mappings"][table]
    try:
        doc = world["opensearch"].get(index=mapping.opensearch.index, id=opensearch_document_id(mapping, change))
        source = doc["_source"]
    except NotFoundError:
        source = None
    item = world["table"].get_item(Key=dynamodb_key(mapping, change), ConsistentRead=True).get("Item")
    return source, item


def live_title(world: dict[str, Any], key: int) -> tuple[Any, Any]:
    doc, item = sink_state(world, "posts", post_change(key))
    return (doc or {}).get("title"), None if item is None or item["_deleted"] else item.get("title")


def agrees(world: dict[str, Any], table: str, change: Change) -> bool:
    comparison = compare_row(world["db"], world["mappings"][table], change, world["opensearch"], world["table"])
    assert comparison.agrees, (comparison.opensearch_problem, comparison.dynamodb_problem)
    return True


def committed_post(world: dict[str, Any], title: str) -> int:
    """A committed row, already replicated (both sinks hold it)."""
    with world["db"].cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'a')", (title,))
        key = int(cur.lastrowid)
    fetch(world["settings"], world["mappings"]["posts"], post_change(key), world["sinks"])
    assert live_title(world, key) == (title, title)
    return key


def fetch_while_open(world: dict[str, Any], table: str, change: Change, waiting: int = 1) -> FetchInThread:
    """Start a fetch for the key the open writer holds, and show it waits on the writer's lock (the ``waiting``-th
    lock wait in the schema: the writer is the only other session in it)."""
    running = FetchInThread(world["settings"], world["mappings"][table], change, world["sinks"])
    wait_until(
        "the fetch to wait for the writer's open transaction",
        lambda: lock_waits(world["db"], world["settings"].name) >= waiting,
        WAIT_SECONDS,
    )
    assert running.is_waiting()
    return running


def test_an_update_read_before_commit_replicates_the_committed_value(world: dict[str, Any]) -> None:
    # Given a replicated row, and a writer that updated it and has not committed
    key = committed_post(world, "before")
    with world["writer"].cursor() as cur:
        cur.execute("UPDATE posts SET title = 'after' WHERE id = %s", (key,))

    # When the fetcher runs for the change (the trigger fired before COMMIT), and then the writer commits
    running = fetch_while_open(world, "posts", post_change(key))
    world["writer"].commit()
    report = running.result()

    # Then both sinks hold the committed value
    assert {o["outcome"] for o in report.outcomes} == {"written"}
    assert live_title(world, key) == ("after", "after")
    assert agrees(world, "posts", post_change(key))


def test_an_update_rolled_back_leaves_the_original_value(world: dict[str, Any]) -> None:
    # Given a replicated row, and a writer whose update will be rolled back
    key = committed_post(world, "original")
    with world["writer"].cursor() as cur:
        cur.execute("UPDATE posts SET title = 'never committed' WHERE id = %s", (key,))

    # When the change is fetched while the transaction is open, and it then rolls back
    running = fetch_while_open(world, "posts", post_change(key))
    world["writer"].rollback()
    running.result()

    # Then both sinks still hold the original
    assert live_title(world, key) == ("original", "original")
    assert agrees(world, "posts", post_change(key))


def test_an_insert_rolled_back_never_appears(world: dict[str, Any]) -> None:
    # Given a writer that inserted a row and will roll back
    with world["writer"].cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('ghost', 'b', 'a')")
        key = int(cur.lastrowid)

    # When the insert's change is fetched while the transaction is open, and it then rolls back
    running = fetch_while_open(world, "posts", post_change(key))
    world["writer"].rollback()
    report = running.result()

    # Then neither sink has a live row (a tombstone is what a delete leaves, and is fine)
    assert {o["outcome"] for o in report.outcomes} == {"deleted"}
    doc, item = sink_state(world, "posts", post_change(key))
    assert doc is None
    assert item is None or item["_deleted"] is True
    assert agrees(world, "posts", post_change(key))


def test_an_insert_read_before_commit_appears_once_committed(world: dict[str, Any]) -> None:
    with world["writer"].cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('born', 'b', 'a')")
        key = int(cur.lastrowid)

    running = fetch_while_open(world, "posts", post_change(key))
    world["writer"].commit()
    running.result()

    assert live_title(world, key) == ("born", "born")
    assert agrees(world, "posts", post_change(key))


def test_a_delete_rolled_back_removes_nothing(world: dict[str, Any]) -> None:
    # Given a replicated row, and a writer that deleted it and will roll back
    key = committed_post(world, "survivor")
    with world["writer"].cursor() as cur:
        cur.execute("DELETE FROM posts WHERE id = %s", (key,))

    # When the delete's change is fetched while the transaction is open, and it then rolls back
    running = fetch_while_open(world, "posts", post_change(key))
    world["writer"].rollback()
    running.result()

    # Then the row is still in both sinks
    assert live_title(world, key) == ("survivor", "survivor")
    assert agrees(world, "posts", post_change(key))


def test_a_delete_read_before_commit_removes_the_row_once_committed(world: dict[str, Any]) -> None:
    key = committed_post(world, "doomed")
    with world["writer"].cursor() as cur:
        cur.execute("DELETE FROM posts WHERE id = %s", (key,))

    running = fetch_while_open(world, "posts", post_change(key))
    world["writer"].commit()
    running.result()

    assert live_title(world, key) == (None, None)
    assert agrees(world, "posts", post_change(key))


def test_a_composite_string_key_change_read_before_commit_moves_the_row(world: dict[str, Any]) -> None:
    # Given a replicated tenant_settings row, and a writer that changes its key (case only: one key to
    # the case-insensitive collation, two different values to the sinks) and has not committed
    mapping = world["mappings"]["tenant_settings"]
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    old, new = setting_change(tenant, "theme"), setting_change(tenant, "Theme")
    with world["db"].cursor() as cur:
        cur.execute(
            "INSERT INTO tenant_settings (tenant, setting_key, value) VALUES (%s, 'theme', JSON_OBJECT('dark', true))",
            (tenant,),
        )
    fetch(world["settings"], mapping, old, world["sinks"])
    with world["writer"].cursor() as cur:
        cur.execute("UPDATE tenant_settings SET setting_key = 'Theme' WHERE tenant = %s", (tenant,))

    # When both changes the trigger sends (new key, old key) are fetched while it is open, then it commits
    running = [fetch_while_open(world, "tenant_settings", change, n) for n, change in enumerate((new, old), 1)]
    world["writer"].commit()
    for fetching in running:
        fetching.result()

    # Then the row lives under its new key only
    doc, item = sink_state(world, "tenant_settings", new)
    assert doc is not None and doc["setting_key"] == "Theme" and doc["value"] == {"dark": True}
    assert item is not None and item["_deleted"] is False and item["setting_key"] == "Theme"
    gone_doc, gone_item = sink_state(world, "tenant_settings", old)
    assert gone_doc is None and gone_item is not None and gone_item["_deleted"] is True
    assert agrees(world, "tenant_settings", new) and agrees(world, "tenant_settings", old)
