"""Two tables through the deployed app on the local stack: `posts` (integer key) and
`tenant_settings` (composite string key, case-insensitive collation, JSON column, renamed and
excluded columns, its own key formats), captured by the generated triggers of V004.

MySQL 8.0 triggers → change log + lambda_async (loadable function → bridge) → ParserFunction → fetch queue →
FetcherFunction → OpenSearch server + DynamoDB (ministack); agreement is judged by fanout.operations.verify
with the bundled mapping.
"""

from __future__ import annotations

import time
import uuid

from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import dynamodb_key, opensearch_document_id
from tests.support.e2e import Stack, post, setting
from tests.support.waiting import wait_until

MAPPINGS = default_mappings()


def test_two_tables_one_with_a_composite_string_key_replicate_together(stack: Stack) -> None:
    tenant = f"acme/Ünï {uuid.uuid4().hex[:6]}"
    theme, locale = setting(tenant, "theme: dark|mode 🚀"), setting(tenant, "locale")
    with stack.db.cursor() as cur:
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s", (tenant,))

    # Given one transaction writing to both tables
    writer = stack.connection(autocommit=False)
    try:
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
    finally:
        writer.close()

    # Then every row reaches both sinks, under the mapping's ids, renames and exclusions
    for change in (post(post_id), theme, locale):
        wait_until(f"{change.table} {change.document_id} to agree", lambda c=change: stack.agreed(c))
    document, item = stack.state(theme)
    assert document["value"] == {"dark": True, "contrast": 1.5}
    assert document["summary"] == 'it\'s "dark" \\ 日本' and "description" not in document
    assert "secret_hash" not in document and item["secret_hash"].value == b"\xde\xad\xbe\xef"
    assert opensearch_document_id(MAPPINGS.tables["tenant_settings"], theme).startswith("acme%2F%C3%9Cn%C3%AF%20")
    assert dynamodb_key(MAPPINGS.tables["tenant_settings"], theme)["pk"].startswith("tenant_settings#acme%2F")
    assert stack.state(locale)[0]["value"] == "fr-CA"

    # When one setting changes value and the other changes its key's case only (one key to the collation)
    with stack.db.cursor() as cur:
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
    wait_until("the new value", lambda: (stack.state(theme)[0] or {}).get("value") == {"dark": False, "contrast": 1.5})
    wait_until("the moved key to arrive", lambda: stack.agreed(moved) and stack.state(moved)[0])
    wait_until("the old key to be gone", lambda: stack.agreed(locale) and stack.state(locale)[0] is None)
    assert stack.state(locale)[1]["_deleted"] is True
    wait_until("the update to agree", lambda: stack.agreed(theme))

    # When the rows are deleted; Then both sinks drop them
    with stack.db.cursor() as cur:
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s", (tenant,))
        cur.execute("DELETE FROM posts WHERE id = %s", (post_id,))
    for change in (theme, moved, post(post_id)):
        wait_until(f"{change.document_id} deleted", lambda c=change: stack.agreed(c) and stack.state(c)[0] is None)
        assert stack.state(change)[1]["_deleted"] is True


def test_a_rolled_back_insert_with_a_composite_key_never_appears(stack: Stack) -> None:
    change = setting(f"ghost-{uuid.uuid4().hex[:6]}", "never")
    writer = stack.connection(autocommit=False)
    try:
        with writer.cursor() as cur:
            cur.execute(
                "INSERT INTO tenant_settings (tenant, setting_key, value) VALUES (%s, %s, '{}')", change.key_values
            )
        time.sleep(1.0)  # the ring has left (lambda_async is not undone by a rollback, as in Aurora)
        writer.rollback()
    finally:
        writer.close()

    # The change log rolled back with the transaction: once a later committed change has reached
    # both sinks, the rolled-back key has still reached neither.
    later = setting(f"after-ghost-{uuid.uuid4().hex[:6]}", "kept")
    with stack.db.cursor() as cur:
        cur.execute("INSERT INTO tenant_settings (tenant, setting_key, value) VALUES (%s, %s, '{}')", later.key_values)
    wait_until("the later insert in both sinks", lambda: all(stack.state(later)))
    document, item = stack.state(change)
    assert document is None and item is None
    with stack.db.cursor() as cur:
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s", (later.key_values[0],))
