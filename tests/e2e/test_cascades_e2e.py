"""Foreign-key cascades through the deployed app on the local stack: deleting an author deletes their articles
and the articles' comments and tag links (ON DELETE CASCADE, local/demo_schema.sql), which fire no trigger;
the generated cascade trigger on ``authors`` logs them, and both sinks lose the articles with no repair.
"""

from __future__ import annotations

import uuid

from fanout.model.change import Change
from tests.support.e2e import Stack, article
from tests.support.waiting import wait_until


def gone_from_both_sinks(stack: Stack, key: int) -> bool:
    """The source has no such article and both sinks agree (no document; a tombstone item)."""
    return stack.agreed(Change("articles", (("id", key),), "delete", 0)) is not None


def present_in_both_sinks(stack: Stack, key: int) -> bool:
    return stack.document(article(key)) is not None and stack.agreed(article(key)) is not None


def test_deleting_an_author_removes_their_articles_from_both_sinks_without_a_repair(stack: Stack) -> None:
    # Given an author of 10 published articles, each with a comment and a tag, and another author's article,
    # written with capture off and then replicated by one update each: once those are in both sinks, no change
    # of theirs is still in flight (a late re-read of a deleted root would delete it, hiding a missed cascade)
    run = uuid.uuid4().hex[:8]
    stack.sql("SET @fanout_disable = 1")
    try:
        author = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Cascade {run}")
        other_author = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Kept {run}")
        tag = stack.sql("INSERT INTO tags (name) VALUES (%s)", f"cascade-{run}")
        articles = []
        for n in range(10):
            key = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'draft', %s)",
                          f"cascade {run} {n}", author)  # fmt: skip
            stack.sql("INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'c', 'hello')", key)
            stack.sql("INSERT INTO article_tags VALUES (%s, %s)", key, tag)
            articles.append(key)
        kept = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'draft', %s)",
                   f"kept {run}", other_author)  # fmt: skip
    finally:
        stack.sql("SET @fanout_disable = NULL")
    for key in [*articles, kept]:
        stack.sql("UPDATE articles SET status = 'published' WHERE id = %s", key)
    for key in [*articles, kept]:
        wait_until(f"article {key} in both sinks", lambda a=key: present_in_both_sinks(stack, a))

    # When the author is deleted and the engine cascades to the articles, their comments and tag links
    stack.sql("DELETE FROM authors WHERE id = %s", author)

    # Then every article of theirs leaves both sinks, and the other author's stays
    for key in articles:
        wait_until(f"article {key} gone from both sinks", lambda a=key: gone_from_both_sinks(stack, a))
    assert present_in_both_sinks(stack, kept)
