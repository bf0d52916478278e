"""Foreign-key cascades through the deployed app on the local stack: deleting an author deletes their articles
and the articles' comments and tag links (ON DELETE CASCADE, local/demo_schema.sql), which fire no trigger;
the generated cascade trigger on ``authors`` logs them, and both sinks lose the articles with no repair.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.operations.verify import compare_row
from fanout.sinks.opensearch import make_client
from local.stack import source_connection
from tests.support.aws import aws_resource
from tests.support.e2e import wait_until

ARTICLES = default_mappings().tables["articles"]


@pytest.fixture(scope="module")
def stack(deployed_stack: dict[str, str]) -> Iterator[dict[str, Any]]:
    env = deployed_stack
    db = source_connection(env, autocommit=True)
    yield {
        "db": db,
        "opensearch": make_client(env["OPENSEARCH_ENDPOINT"]),
        "table": aws_resource(env, "dynamodb").Table(env["DYNAMODB_TABLE"]),
    }
    db.close()


def sql(stack: dict[str, Any], statement: str, *params: Any) -> int:
    with stack["db"].cursor() as cur:
        cur.execute(statement, params)
        return int(cur.lastrowid or 0)


def gone_from_both_sinks(stack: dict[str, Any], article: int) -> bool:
    """The source has no such article and both sinks agree (no document; a tombstone item)."""
    change = Change("articles", (("id", article),), "delete", 0)
    return compare_row(stack["db"], ARTICLES, change, stack["opensearch"], stack["table"]).agrees


def present_in_both_sinks(stack: dict[str, Any], article: int) -> bool:
    change = Change("articles", (("id", article),), "update", 0)
    found = stack["opensearch"].get(index=ARTICLES.opensearch_index, id=str(article), ignore=404).get("found")
    return bool(found) and compare_row(stack["db"], ARTICLES, change, stack["opensearch"], stack["table"]).agrees


def test_deleting_an_author_removes_their_articles_from_both_sinks_without_a_repair(stack: dict[str, Any]) -> None:
    # Given an author of 10 published articles, each with a comment and a tag, and another author's article,
    # written with capture off and then replicated by one update each: once those are in both sinks, no change
    # of theirs is still in flight (a late re-read of a deleted root would delete it, hiding a missed cascade)
    run = uuid.uuid4().hex[:8]
    sql(stack, "SET @fanout_disable = 1")
    try:
        author = sql(stack, "INSERT INTO authors (name) VALUES (%s)", f"Cascade {run}")
        other_author = sql(stack, "INSERT INTO authors (name) VALUES (%s)", f"Kept {run}")
        tag = sql(stack, "INSERT INTO tags (name) VALUES (%s)", f"cascade-{run}")
        articles = []
        for n in range(10):
            article = sql(stack, "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'draft', %s)",
                          f"cascade {run} {n}", author)  # fmt: skip
            sql(stack, "INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'c', 'hello')", article)
            sql(stack, "INSERT INTO article_tags VALUES (%s, %s)", article, tag)
            articles.append(article)
        kept = sql(stack, "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'draft', %s)",
                   f"kept {run}", other_author)  # fmt: skip
    finally:
        sql(stack, "SET @fanout_disable = NULL")
    for article in [*articles, kept]:
        sql(stack, "UPDATE articles SET status = 'published' WHERE id = %s", article)
    for article in [*articles, kept]:
        wait_until(f"article {article} in both sinks", lambda a=article: present_in_both_sinks(stack, a))

    # When the author is deleted and the engine cascades to the articles, their comments and tag links
    sql(stack, "DELETE FROM authors WHERE id = %s", author)

    # Then every article of theirs leaves both sinks, and the other author's stays
    for article in articles:
        wait_until(f"article {article} gone from both sinks", lambda a=article: gone_from_both_sinks(stack, a))
    assert present_in_both_sinks(stack, kept)
