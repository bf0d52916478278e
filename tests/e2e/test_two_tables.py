"""Two tables through the deployed app on the local stack: `posts` (integer key) and
`tenant_settings` (composite string key, case-insensitive collation, JSON column, renamed and
excluded columns, its own key formats), captured by the generated triggers of V004.

MariaDB triggers → lambda_async shim → bridge → ParserFunction → FetcherFunction → OpenSearch
server + DynamoDB (ministack); agreement is judged by fanout.operations.verify with the bundled mapping.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from fanout.operations.verify import compare_row, fetch_sink_state
from fanout.sinks.opensearch import make_client
from local.stack import source_connection
from tests.support.aws import aws_resource
from tests.support.e2e import wait_until

MAPPINGS = default_mappings()


@pytest.fixture(scope="module")
def stack(deployed_stack: dict[str, str]) -> Iterator[dict[str, Any]]:
    env = deployed_stack

    def connection(autocommit: bool) -> Any:
        return source_connection(env, autocommit=autocommit)

    db = connection(autocommit=True)
    yield {
        "db": db,
        "connection": connection,
        "opensearch": make_client(env["OPENSEARCH_ENDPOINT"]),
        "table": aws_resource(env, "dynamodb").Table(env["DYNAMODB_TABLE"]),
    }
    db.close()


def setting(tenant: str, setting_key: str) -> Change:
    return Change("tenant_settings", (("tenant", tenant), ("setting_key", setting_key)), "update", 0)


def post(key: int) -> Change:
    return Change("posts", (("id", key),), "update", 0)


def agreed(stack: dict[str, Any], change: Change) -> Any:
    mapping = MAPPINGS.tables[change.table]
    comparison = compare_row(stack["db"], mapping, change, stack["opensearch"], stack["table"])
    return comparison if comparison.agrees else None


def state(stack: dict[str, Any], change: Change) -> tuple[Any, Any]:
    mapping = MAPPINGS.tables[change.table]
    return fetch_sink_state(mapping, change, stack["opensearch"], lambda _: stack["table"])


def test_two_tables_one_with_a_composite_string_key_replicate_together(stack: dict[str, Any]) -> None:
    tenant = f"acme/Ünï {uuid.uuid4().hex[:6]}"
    theme, locale = setting(tenant, "theme: dark|mode 🚀"), setting(tenant, "locale")
    with stack["db"].cursor() as cur:
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s", (tenant,))

    # Given one transaction writing to both tables
    writer = stack["connection"](autocommit=False)
    with writer.cursor() as cur:
        cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'a')", (f"two tables {tenant}",))
        post_id = int(cur.lastrowid)
        cur.execute(
            "INSERT INTO tenant_settings (tenant, setting_key, value, description, secret_hash) VALUES "
            "(%s, %s, JSON_OBJECT('dark', TRUE, 'contrast', 1.5), 'it''s \"dark\" \\\\ 日本', X'DEADBEEF'), "
            "(%s, 'locale', JSON_QUOTE('fr-CA'), NULL, NULL)",
            (tenant, theme.key_values[1], tenant),
        )
    writer.commit()
    writer.close()

    # Then every row reaches both sinks, under the mapping's ids, renames and exclusions
    for change in (post(post_id), theme, locale):
        wait_until(f"{change.table} {change.document_id} to agree", lambda c=change: agreed(stack, c))
    document, item = state(stack, theme)
    assert document["value"] == {"dark": True, "contrast": 1.5}
    assert document["summary"] == 'it\'s "dark" \\ 日本' and "description" not in document
    assert "secret_hash" not in document and item["secret_hash"].value == b"\xde\xad\xbe\xef"
    assert opensearch_document_id(MAPPINGS.tables["tenant_settings"], theme).startswith("acme%2F%C3%9Cn%C3%AF%20")
    assert dynamodb_key(MAPPINGS.tables["tenant_settings"], theme)["pk"].startswith("tenant_settings#acme%2F")
    assert state(stack, locale)[0]["value"] == "fr-CA"

    # When one setting changes value and the other changes its key's case only (one key to the collation)
    with stack["db"].cursor() as cur:
        cur.execute(
            "UPDATE tenant_settings SET value = JSON_SET(value, '$.dark', FALSE), revision = revision + 1 "
            "WHERE tenant = %s AND setting_key = %s",
            (tenant, theme.key_values[1]),
        )
        cur.execute(
            "UPDATE tenant_settings SET setting_key = 'LOCALE' WHERE tenant = %s AND setting_key = 'locale'", (tenant,)
        )
    moved = setting(tenant, "LOCALE")

    # Then the value is updated and the row moved to its new key: the old spelling is gone from both sinks
    wait_until("the new value", lambda: (state(stack, theme)[0] or {}).get("value") == {"dark": False, "contrast": 1.5})
    wait_until("the moved key to arrive", lambda: agreed(stack, moved) and state(stack, moved)[0])
    wait_until("the old key to be gone", lambda: agreed(stack, locale) and state(stack, locale)[0] is None)
    assert state(stack, locale)[1]["_deleted"] is True
    wait_until("the update to agree", lambda: agreed(stack, theme))

    # When the rows are deleted; Then both sinks drop them
    with stack["db"].cursor() as cur:
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s", (tenant,))
        cur.execute("DELETE FROM posts WHERE id = %s", (post_id,))
    for change in (theme, moved, post(post_id)):
        wait_until(f"{change.document_id} deleted", lambda c=change: agreed(stack, c) and state(stack, c)[0] is None)
        assert state(stack, change)[1]["_deleted"] is True


def test_a_rolled_back_insert_with_a_composite_key_never_appears(stack: dict[str, Any]) -> None:
    change = setting(f"ghost-{uuid.uuid4().hex[:6]}", "never")
    writer = stack["connection"](autocommit=False)
    with writer.cursor() as cur:
        cur.execute("INSERT INTO tenant_settings (tenant, setting_key, value) VALUES (%s, %s, '{}')", change.key_values)
    time.sleep(1.0)  # the ring has left (the shim row survives the rollback, as in Aurora)
    writer.rollback()
    writer.close()

    # The change log rolled back with the transaction: once a later committed change has reached
    # both sinks, the rolled-back key has still reached neither.
    later = setting(f"after-ghost-{uuid.uuid4().hex[:6]}", "kept")
    with stack["db"].cursor() as cur:
        cur.execute("INSERT INTO tenant_settings (tenant, setting_key, value) VALUES (%s, %s, '{}')", later.key_values)
    wait_until("the later insert in both sinks", lambda: all(state(stack, later)))
    document, item = state(stack, change)
    assert document is None and item is None
    with stack["db"].cursor() as cur:
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s", (later.key_values[0],))
