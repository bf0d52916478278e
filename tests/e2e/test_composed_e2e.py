"""Composed documents through the deployed app on the local stack: an article with its author (parent),
comments (children) and tags (many-to-many), published only (filter), captured by the generated V007
triggers on every table that feeds it.

MySQL 8.0 triggers → change log → parser → fetch queue → fetcher (composed locking read) → OpenSearch and
DynamoDB. Agreement is judged by fanout.operations.verify, which composes the document from the source.
"""

from __future__ import annotations

import uuid
from typing import Any

from fanout.model.mapping import default_mappings
from fanout.pipeline.related import PAGES_PER_INVOCATION
from fanout.source.composition_read import ROOTS_PER_PAGE
from tests.support.e2e import Stack, article
from tests.support.sequences import numbers
from tests.support.waiting import wait_until

ARTICLES = default_mappings().tables["articles"]


def document(stack: Stack, key: int) -> dict[str, Any] | None:
    return stack.document(article(key))


def agreed(stack: Stack, key: int) -> Any:
    return stack.agreed(article(key))


def test_each_relation_kind_and_the_filter_reach_both_sinks(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    author = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Ann {run}")
    first = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                f"first {run}", author)  # fmt: skip
    second = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                 f"second {run}", author)  # fmt: skip
    tag = stack.sql("INSERT INTO tags (name) VALUES (%s)", f"tag-{run}")
    stack.sql("INSERT INTO article_tags VALUES (%s, %s)", first, tag)
    comment = stack.sql("INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'c', 'hello')", first)

    # a document with its author, its comment and its tag, in both sinks
    doc = wait_until("the composed article", lambda: agreed(stack, first) and document(stack, first))
    assert doc["author"]["name"] == f"Ann {run}" and doc["tags"] == [f"tag-{run}"]
    assert [c["body"] for c in doc["comments"]] == ["hello"]

    # a parent renamed: every article of the author is rebuilt
    stack.sql("UPDATE authors SET name = %s WHERE id = %s", f"Ann Renamed {run}", author)
    for key in (first, second):
        wait_until(
            "the renamed author in every article",
            lambda a=key: (
                agreed(stack, a) and (document(stack, a) or {}).get("author", {}).get("name") == f"Ann Renamed {run}"
            ),
        )

    # a child moved: both articles rebuilt
    stack.sql("UPDATE comments SET article_id = %s WHERE id = %s", second, comment)
    wait_until("the comment moved", lambda: agreed(stack, first) and agreed(stack, second)
               and [c["id"] for c in document(stack, second)["comments"]] == [comment])  # fmt: skip
    assert document(stack, first)["comments"] == []

    # a link target renamed, then the link removed
    stack.sql("UPDATE tags SET name = %s WHERE id = %s", f"renamed-{run}", tag)
    wait_until("the renamed tag", lambda: agreed(stack, first) and document(stack, first)["tags"] == [f"renamed-{run}"])
    stack.sql("DELETE FROM article_tags WHERE article_id = %s AND tag_id = %s", first, tag)
    wait_until("the unlinked tag", lambda: agreed(stack, first) and document(stack, first)["tags"] == [])

    # the filter: unpublished is removed from both sinks, republished comes back
    stack.sql("UPDATE articles SET status = 'draft' WHERE id = %s", second)
    wait_until("the unpublished article gone", lambda: agreed(stack, second) and document(stack, second) is None)
    stack.sql("UPDATE articles SET status = 'published' WHERE id = %s", second)
    wait_until("the republished article back", lambda: agreed(stack, second) and document(stack, second))


def test_a_parent_with_more_roots_than_one_fetcher_invocation_reaches_them_all_through_a_continuation(
    stack: Stack,
) -> None:
    # Given an author of one article more than a fetcher invocation rebuilds, written with capture off: their
    # documents can only come from the author's change (the last one only from the continuation)
    run = uuid.uuid4().hex[:8]
    roots = PAGES_PER_INVOCATION * ROOTS_PER_PAGE + 1
    author = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Many {run}")
    stack.sql("SET @fanout_disable = 1")
    try:
        stack.sql(f"INSERT INTO articles (title, body, status, author_id) SELECT CONCAT('many ', seq), 'b', "
                  f"'published', %s FROM {numbers(1, roots)} s", author)  # fmt: skip  # noqa: S608
        with stack.db.cursor() as cur:
            cur.execute("SELECT MIN(id), MAX(id) FROM articles WHERE author_id = %s", (author,))
            first, last = cur.fetchone()
    finally:
        stack.sql("SET @fanout_disable = NULL")

    # When the author is renamed (one change via ``author``, through the fetch queue)
    stack.sql("UPDATE authors SET name = %s WHERE id = %s", f"Many Renamed {run}", author)

    # Then every article reaches both sinks: the first invocation's pages and the continuation's
    wait_until("the last article, rebuilt by the continuation",
               lambda: agreed(stack, last) and (document(stack, last) or {}).get("author", {}).get("name")
               == f"Many Renamed {run}")  # fmt: skip
    assert agreed(stack, first)

    def renamed() -> int:
        stack.opensearch.indices.refresh(index=ARTICLES.opensearch.index)
        # by the run's own name: the index may hold other stacks' articles under the same author id (one
        # OpenSearch node serves several checkouts, each with its own database and auto-increment ids)
        query = {"query": {"match_phrase": {"author.name": f"Many Renamed {run}"}}}
        return int(stack.opensearch.count(index=ARTICLES.opensearch.index, body=query)["count"])

    assert wait_until(f"{roots} articles of the author", lambda: renamed() == roots)
