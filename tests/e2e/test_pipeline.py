"""A row change travels through the deployed app on the local stack.

MariaDB trigger → lambda_async shim → bridge → ParserFunction (async invoke)
→ FetcherFunction (async invoke) → OpenSearch (a real node) + DynamoDB (ministack).
The stack is brought up and deployed by the session fixture, as `make up` does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.capture.names import CHANGE_LOG_TABLE
from local.stack import source_connection
from tests.support.e2e import agreed, document, item, wait_until
from tests.support.files import EVENTS


@pytest.fixture
def cleanup(stack: dict[str, Any]) -> Iterator[list[int]]:
    ids: list[int] = []
    yield ids
    with stack["db"].cursor() as cur:
        for key in ids:
            cur.execute("DELETE FROM posts WHERE id = %s", (key,))


def test_insert_update_delete_reach_both_sinks(stack: dict[str, Any], cleanup: list[int]) -> None:
    title = f"e2e {uuid.uuid4().hex[:8]} — naïve café 🚀"
    with stack["db"].cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)", (title, "it's \\ here", "zoë"))
        key = int(cur.lastrowid)
    cleanup.append(key)

    wait_until("the insert in both sinks", lambda: document(stack, key) and item(stack, key))
    wait_until("the insert to agree", lambda: agreed(stack, key))
    assert document(stack, key)["title"] == title
    assert item(stack, key)["author"] == "zoë"

    with stack["db"].cursor() as cur:
        cur.execute("UPDATE posts SET status = 'published', title = %s WHERE id = %s", (title + " (edited)", key))
    wait_until("the update in OpenSearch", lambda: (document(stack, key) or {}).get("status") == "published")
    wait_until("the update in DynamoDB", lambda: (item(stack, key) or {}).get("title") == title + " (edited)")
    wait_until("the update to agree", lambda: agreed(stack, key))

    with stack["db"].cursor() as cur:
        cur.execute("DELETE FROM posts WHERE id = %s", (key,))
    wait_until("the delete in OpenSearch", lambda: document(stack, key) is None)
    wait_until("the tombstone in DynamoDB", lambda: (item(stack, key) or {}).get("_deleted") is True)
    assert "title" not in item(stack, key)


def test_primary_key_change_moves_the_row(stack: dict[str, Any], cleanup: list[int]) -> None:
    with stack["db"].cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('moving', 'b', 'a')")
        old = int(cur.lastrowid)
        cur.execute("SELECT MAX(id) + 5000 FROM posts")
        new = int(cur.fetchone()[0])
    cleanup.extend([old, new])
    wait_until("the original key in both sinks", lambda: document(stack, old) and item(stack, old))

    with stack["db"].cursor() as cur:
        cur.execute("UPDATE posts SET id = %s WHERE id = %s", (new, old))
    wait_until("the new key in OpenSearch", lambda: document(stack, new))
    wait_until("the old key gone from OpenSearch", lambda: document(stack, old) is None)
    wait_until("the old key tombstoned in DynamoDB", lambda: (item(stack, old) or {}).get("_deleted") is True)
    wait_until("the new key to agree", lambda: agreed(stack, new))


def test_a_rolled_back_insert_never_appears(stack: dict[str, Any]) -> None:
    writer = source_connection(stack["env"], autocommit=False)
    with writer.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('rolled back', 'b', 'a')")
        key = int(cur.lastrowid)
    time.sleep(1.0)  # the ring has left (the shim row survives the rollback, as in Aurora)
    writer.rollback()
    writer.close()
    # The change log rolled back with the transaction: nothing travels. A later committed change
    # does, and once it has reached both sinks the rolled-back key has still reached neither.
    with stack["db"].cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES ('after the rollback', 'b', 'a')")
        later = int(cur.lastrowid)
    wait_until("the later insert in both sinks", lambda: document(stack, later) and item(stack, later))
    assert document(stack, key) is None and item(stack, key) is None
    with stack["db"].cursor() as cur:
        cur.execute("DELETE FROM posts WHERE id = %s", (later,))


def test_sample_events_through_the_deployed_parser(stack: dict[str, Any]) -> None:
    """The events/ files, invoked as `sam local invoke -e` would, against the deployed function: a ring drains
    the change log; a per-row payload of the retired triggers is recorded, not handed on."""
    ring = stack["lambda"].invoke(
        FunctionName=stack["env"]["PARSER_FUNCTION_NAME"], Payload=(EVENTS / "ring.json").read_bytes()
    )
    assert "FunctionError" not in ring
    assert {"claimed", "forwarded", "rejected"} <= set(json.loads(ring["Payload"].read()))
    legacy = stack["lambda"].invoke(
        FunctionName=stack["env"]["PARSER_FUNCTION_NAME"], Payload=(EVENTS / "update.json").read_bytes()
    )
    assert "FunctionError" not in legacy
    assert json.loads(legacy["Payload"].read())["rejected"] == 1


def test_a_malformed_change_log_row_is_recorded_in_the_dead_letter_queue(stack: dict[str, Any]) -> None:
    # Given a change-log row that is no valid change (the triggers never write one: a hand-made row)
    payload = json.loads((EVENTS / "malformed.json").read_text())
    marker = uuid.uuid4().hex  # makes this run's record recognisable (MySQL's JSON column rewrites the text)
    payload["pk"]["id"] += f" -- {marker}"
    with stack["db"].cursor() as cur:
        cur.execute(f"INSERT INTO {CHANGE_LOG_TABLE} (payload) VALUES (%s)", (json.dumps(payload),))  # noqa: S608
    stack["db"].commit()
    # When the parser is rung
    response = stack["lambda"].invoke(
        FunctionName=stack["env"]["PARSER_FUNCTION_NAME"],
        InvocationType="Event",
        Payload=(EVENTS / "ring.json").read_bytes(),
    )
    assert response["StatusCode"] == 202
    queue = stack["env"]["DEAD_LETTER_QUEUE_URL"]

    def find() -> dict[str, Any] | None:
        got = stack["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("fanout_rejected") and marker in body["payload"]:
                stack["sqs"].delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                return body
        return None

    # Then the drainer recorded it, with the field at fault, and deleted it from the log
    record = wait_until("the rejection record in the DLQ", find)
    assert record["rejected_by"] == "parser"
    assert "pk.id: must be an integer" in record["reason"] and record["reason"].startswith("change log row ")
