"""Composed documents through the deployed app on the local stack: an article with its author (parent),
comments (children) and tags (many-to-many), published only (filter), captured by the generated V007
triggers on every table that feeds it.

MariaDB triggers → change log → parser → fetch queue → fetcher (composed locking read) → OpenSearch and
DynamoDB. Agreement is judged by fanout.operations.verify, which composes the document from the source.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.operations.verify import compare_row
from fanout.pipeline.related import PAGES_PER_INVOCATION
from fanout.sinks.opensearch import make_client
from fanout.source.compose import ROOTS_PER_PAGE
from local.stack import source_connection
from tests.support.aws import aws_resource
from tests.support.e2e import wait_until
from tests.support.sequences import numbers

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


def document(stack: dict[str, Any], article: int) -> dict[str, Any] | None:
    found = stack["opensearch"].get(index=ARTICLES.opensearch_index, id=str(article), ignore=404)
    return found.get("_source") if found.get("found") else None


def agreed(stack: dict[str, Any], article: int) -> Any:
    change = Change("articles", (("id", article),), "update", 0)
    comparison = compare_row(stack["db"], ARTICLES, change, stack["opensearch"], stack["table"])
    return comparison if comparison.agrees else None


def test_each_relation_kind_and_the_filter_reach_both_sinks(stack: dict[str, Any]) -> None:
    run = uuid.uuid4().hex[:8]
    author = sql(stack, "INSERT INTO authors (name) VALUES (%s)", f"Ann {run}")
    first = sql(stack, "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                f"first {run}", author)  # fmt: skip
    second = sql(stack, "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                 f"second {run}", author)  # fmt: skip
    tag = sql(stack, "INSERT INTO tags (name) VALUES (%s)", f"tag-{run}")
    sql(stack, "INSERT INTO article_tags VALUES (%s, %s)", first, tag)
    comment = sql(stack, "INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'c', 'hello')", first)

    # a document with its author, its comment and its tag, in both sinks
    doc = wait_until("the composed article", lambda: agreed(stack, first) and document(stack, first))
    assert doc["author"]["name"] == f"Ann {run}" and doc["tags"] == [f"tag-{run}"]
    assert [c["body"] for c in doc["comments"]] == ["hello"]

    # a parent renamed: every article of the author is rebuilt
    sql(stack, "UPDATE authors SET name = %s WHERE id = %s", f"Ann Renamed {run}", author)
    for article in (first, second):
        wait_until(
            "the renamed author in every article",
            lambda a=article: (
                agreed(stack, a) and (document(stack, a) or {}).get("author", {}).get("name") == f"Ann Renamed {run}"
            ),
        )

    # a child moved: both articles rebuilt
    sql(stack, "UPDATE comments SET article_id = %s WHERE id = %s", second, comment)
    wait_until("the comment moved", lambda: agreed(stack, first) and agreed(stack, second)
               and [c["id"] for c in document(stack, second)["comments"]] == [comment])  # fmt: skip
    assert document(stack, first)["comments"] == []

    # a link target renamed, then the link removed
    sql(stack, "UPDATE tags SET name = %s WHERE id = %s", f"renamed-{run}", tag)
    wait_until("the renamed tag", lambda: agreed(stack, first) and document(stack, first)["tags"] == [f"renamed-{run}"])
    sql(stack, "DELETE FROM article_tags WHERE article_id = %s AND tag_id = %s", first, tag)
    wait_until("the unlinked tag", lambda: agreed(stack, first) and document(stack, first)["tags"] == [])

    # the filter: unpublished is removed from both sinks, republished comes back
    sql(stack, "UPDATE articles SET status = 'draft' WHERE id = %s", second)
    wait_until("the unpublished article gone", lambda: agreed(stack, second) and document(stack, second) is None)
    sql(stack, "UPDATE articles SET status = 'published' WHERE id = %s", second)
    wait_until("the republished article back", lambda: agreed(stack, second) and document(stack, second))


def test_a_parent_with_more_roots_than_one_fetcher_invocation_reaches_them_all_through_a_continuation(
    stack: dict[str, Any],
) -> None:
    # Given an author of one article more than a fetcher invocation rebuilds, written with capture off: their
    # documents can only come from the author's change (the last one only from the continuation)
    run = uuid.uuid4().hex[:8]
    roots = PAGES_PER_INVOCATION * ROOTS_PER_PAGE + 1
    author = sql(stack, "INSERT INTO authors (name) VALUES (%s)", f"Many {run}")
    sql(stack, "SET @fanout_disable = 1")
    try:
        sql(stack, f"INSERT INTO articles (title, body, status, author_id) SELECT CONCAT('many ', seq), 'b', "
                   f"'published', %s FROM {numbers(1, roots)} s", author)  # fmt: skip  # noqa: S608
        with stack["db"].cursor() as cur:
            cur.execute("SELECT MIN(id), MAX(id) FROM articles WHERE author_id = %s", (author,))
            first, last = cur.fetchone()
    finally:
        sql(stack, "SET @fanout_disable = NULL")

    # When the author is renamed (one change via ``author``, through the fetch queue)
    sql(stack, "UPDATE authors SET name = %s WHERE id = %s", f"Many Renamed {run}", author)

    # Then every article reaches both sinks: the first invocation's pages and the continuation's
    wait_until("the last article, rebuilt by the continuation",
               lambda: agreed(stack, last) and (document(stack, last) or {}).get("author", {}).get("name")
               == f"Many Renamed {run}")  # fmt: skip
    assert agreed(stack, first)

    def renamed() -> int:
        stack["opensearch"].indices.refresh(index=ARTICLES.opensearch_index)
        query = {"query": {"term": {"author.id": author}}}
        return int(stack["opensearch"].count(index=ARTICLES.opensearch_index, body=query)["count"])

    assert wait_until(f"{roots} articles of the author", lambda: renamed() == roots)
