"""A row change travels through the deployed app on the local stack.

MySQL 8.0 trigger → change log + lambda_async (loadable function → bridge → Lambda Invoke) → ParserFunction
→ fetch queue → FetcherFunction → OpenSearch (a real node) + DynamoDB (ministack).
The stack is brought up and deployed by the session fixture, as `make up` does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from fanout.capture.names import CHANGE_LOG_TABLE
from tests.support.e2e import Stack, post
from tests.support.files import EVENTS
from tests.support.waiting import wait_until


@pytest.fixture
def cleanup(stack: Stack) -> Iterator[list[int]]:
    ids: list[int] = []
    yield ids
    for key in ids:
        stack.sql("DELETE FROM posts WHERE id = %s", key)


def test_insert_update_delete_reach_both_sinks(stack: Stack, cleanup: list[int]) -> None:
    title = f"e2e {uuid.uuid4().hex[:8]} — naïve café 🚀"
    key = stack.sql("INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)", title, "it's \\ here", "zoë")
    cleanup.append(key)
    row = post(key)

    wait_until("the insert in both sinks", lambda: stack.document(row) and stack.item(row))
    wait_until("the insert to agree", lambda: stack.agreed(row))
    assert (stack.document(row) or {})["title"] == title
    assert (stack.item(row) or {})["author"] == "zoë"

    stack.sql("UPDATE posts SET status = 'published', title = %s WHERE id = %s", title + " (edited)", key)
    wait_until("the update in OpenSearch", lambda: (stack.document(row) or {}).get("status") == "published")
    wait_until("the update in DynamoDB", lambda: (stack.item(row) or {}).get("title") == title + " (edited)")
    wait_until("the update to agree", lambda: stack.agreed(row))

    stack.sql("DELETE FROM posts WHERE id = %s", key)
    wait_until("the delete in OpenSearch", lambda: stack.document(row) is None)
    wait_until("the tombstone in DynamoDB", lambda: (stack.item(row) or {}).get("_deleted") is True)
    assert "title" not in (stack.item(row) or {})


def test_primary_key_change_moves_the_row(stack: Stack, cleanup: list[int]) -> None:
    old = stack.sql("INSERT INTO posts (title, body, author) VALUES ('moving', 'b', 'a')")
    with stack.db.cursor() as cur:
        cur.execute("SELECT MAX(id) + 5000 FROM posts")
        new = int(cur.fetchone()[0])
    cleanup.extend([old, new])
    wait_until("the original key in both sinks", lambda: stack.document(post(old)) and stack.item(post(old)))

    stack.sql("UPDATE posts SET id = %s WHERE id = %s", new, old)
    wait_until("the new key in OpenSearch", lambda: stack.document(post(new)))
    wait_until("the old key gone from OpenSearch", lambda: stack.document(post(old)) is None)
    wait_until("the old key tombstoned in DynamoDB", lambda: (stack.item(post(old)) or {}).get("_deleted") is True)
    wait_until("the new key to agree", lambda: stack.agreed(post(new)))


def test_a_rolled_back_insert_never_appears(stack: Stack, cleanup: list[int]) -> None:
    writer = stack.connection(autocommit=False)
    try:
        with writer.cursor() as cur:
            cur.execute("INSERT INTO posts (title, body, author) VALUES ('rolled back', 'b', 'a')")
            key = int(cur.lastrowid)
        # the trigger's lambda_async call has left (Aurora's invoke is not undone by a rollback): the parser is
        # rung and finds nothing committed
        time.sleep(1.0)
        writer.rollback()
    finally:
        writer.close()
    # The change log rolled back with the transaction: nothing travels. A later committed change
    # does, and once it has reached both sinks the rolled-back key has still reached neither.
    later = stack.sql("INSERT INTO posts (title, body, author) VALUES ('after the rollback', 'b', 'a')")
    cleanup.append(later)
    wait_until("the later insert in both sinks", lambda: stack.document(post(later)) and stack.item(post(later)))
    assert stack.document(post(key)) is None and stack.item(post(key)) is None


def test_sample_events_through_the_deployed_parser(stack: Stack) -> None:
    """The events/ files, invoked as `sam local invoke -e` would, against the deployed function: a ring drains
    the change log; a per-row payload of the retired triggers is recorded, not handed on."""
    ring, drained = stack.invoke(stack.env.parser_function_name, json.loads((EVENTS / "ring.json").read_text()))
    assert "FunctionError" not in ring
    assert {"claimed", "forwarded", "rejected"} <= set(drained)
    legacy, answer = stack.invoke(stack.env.parser_function_name, json.loads((EVENTS / "update.json").read_text()))
    assert "FunctionError" not in legacy
    assert answer["rejected"] == 1


def test_a_malformed_change_log_row_is_recorded_in_the_dead_letter_queue(stack: Stack) -> None:
    # Given a change-log row that is no valid change (the triggers never write one: a hand-made row)
    payload = json.loads((EVENTS / "malformed.json").read_text())
    marker = uuid.uuid4().hex  # makes this run's record recognisable (MySQL's JSON column rewrites the text)
    payload["pk"]["id"] += f" -- {marker}"
    stack.sql(f"INSERT INTO {CHANGE_LOG_TABLE} (payload) VALUES (%s)", json.dumps(payload))  # noqa: S608
    # When the parser is rung
    response = stack.lambda_client.invoke(
        FunctionName=stack.env.parser_function_name,
        InvocationType="Event",
        Payload=(EVENTS / "ring.json").read_bytes(),
    )
    assert response["StatusCode"] == 202
    sqs, queue = stack.client("sqs"), stack.env.dead_letter_queue_url

    def find() -> dict[str, object] | None:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("fanout_rejected") and marker in body["payload"]:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                return dict(body)
        return None

    # Then the drainer recorded it, with the field at fault, and deleted it from the log
    record = wait_until("the rejection record in the DLQ", find)
    assert record["rejected_by"] == "parser"
    assert "pk.id: must be an integer" in record["reason"] and record["reason"].startswith("change log row ")
