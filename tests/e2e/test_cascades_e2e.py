"""Foreign-key cascades through the deployed app on the local stack (local/demo_schema.sql). The engine fires no
trigger for a row it deletes or sets to NULL through a foreign key; the generated cascade triggers on the
referenced tables log those rows, and both sinks follow with no repair:

- deleting an author deletes their articles and the articles' comments and tag links (ON DELETE CASCADE);
- deleting a tag group deletes its tags, which deletes their article links: three levels down from a table
  fanout does not capture, and every article that carried one of the tags loses it;
- deleting an author sets ``author_id`` to NULL in the comments they wrote on other authors' articles
  (ON DELETE SET NULL), which those articles' documents show.

Every test seeds with capture off and replicates each article by one explicit update, then waits for both sinks:
no change of the seed is still in flight, so nothing but the cascade triggers can bring the sinks up to date.
"""

from __future__ import annotations

import uuid
from typing import Any

from fanout.model.change import Change
from tests.support.e2e import Stack, article
from tests.support.waiting import wait_until


def gone_from_both_sinks(stack: Stack, key: int) -> bool:
    """The source has no such article and both sinks agree (no document; a tombstone item)."""
    return stack.agreed(Change("articles", (("id", key),), "delete", 0)) is not None


def present_in_both_sinks(stack: Stack, key: int) -> bool:
    return stack.document(article(key)) is not None and stack.agreed(article(key)) is not None


def in_both_sinks(stack: Stack, key: int, read: Any) -> Any:
    """``read`` of the article's OpenSearch document when DynamoDB's item gives the same and both agree with the
    source; None otherwise (for wait_until)."""
    document, item = stack.state(article(key))
    if document is None or item is None or stack.agreed(article(key)) is None:
        return None
    seen = read(document)
    return seen if seen == read(item) else None


def publish(stack: Stack, keys: list[int]) -> None:
    """Replicate articles written with capture off by one captured update each, and wait for both sinks."""
    for key in keys:
        stack.sql("UPDATE articles SET status = 'published' WHERE id = %s", key)
    for key in keys:
        wait_until(f"article {key} in both sinks", lambda a=key: present_in_both_sinks(stack, a))


def tags_of(doc: dict[str, Any]) -> list[str]:
    return list(doc["tags"])


def comment_authors_of(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(c["commenter"], c["author_id"]) for c in doc["comments"]]


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
    publish(stack, [*articles, kept])

    # When the author is deleted and the engine cascades to the articles, their comments and tag links
    stack.sql("DELETE FROM authors WHERE id = %s", author)

    # Then every article of theirs leaves both sinks, and the other author's stays
    for key in articles:
        wait_until(f"article {key} gone from both sinks", lambda a=key: gone_from_both_sinks(stack, a))
    assert present_in_both_sinks(stack, kept)


def test_deleting_a_tag_group_removes_its_tags_from_every_article_in_both_sinks_three_levels_down(
    stack: Stack,
) -> None:
    # Given a tag group (no document reads it) with two tags, a tag outside it, and six articles: each carries
    # the kept tag and one or both of the group's, the last only one of the group's
    run = uuid.uuid4().hex[:8]
    first, second, kept = f"{run}-a", f"{run}-b", f"{run}-kept"
    stack.sql("SET @fanout_disable = 1")
    try:
        group = stack.sql("INSERT INTO tag_groups (name) VALUES (%s)", f"group {run}")
        in_group = [stack.sql("INSERT INTO tags (name, group_id) VALUES (%s, %s)", name, group)
                    for name in (first, second)]  # fmt: skip
        kept_tag = stack.sql("INSERT INTO tags (name) VALUES (%s)", kept)
        articles = []
        for n in range(6):
            key = stack.sql("INSERT INTO articles (title, body, status) VALUES (%s, 'b', 'draft')", f"tagged {run} {n}")
            linked = in_group if n == 0 else [in_group[n % 2]]
            for tag in [*linked, *([] if n == 5 else [kept_tag])]:
                stack.sql("INSERT INTO article_tags VALUES (%s, %s)", key, tag)
            articles.append(key)
    finally:
        stack.sql("SET @fanout_disable = NULL")
    publish(stack, articles)
    assert in_both_sinks(stack, articles[0], tags_of) == [first, second, kept]

    # When the group is deleted: the engine deletes its tags, and their links to the articles
    stack.sql("DELETE FROM tag_groups WHERE id = %s", group)

    # Then every article lists only the kept tag in both sinks (the last one none), with no repair
    with stack.db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM tags WHERE group_id = %s OR id IN %s", (group, in_group))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT COUNT(*) FROM article_tags WHERE tag_id IN %s", (in_group,))
        assert cur.fetchone()[0] == 0
    for key in articles:
        expected = [] if key == articles[5] else [kept]
        wait_until(f"article {key} with tags {expected} in both sinks",
                   lambda a=key, e=expected: in_both_sinks(stack, a, tags_of) == e)  # fmt: skip


def test_deleting_an_author_sets_their_comments_on_other_authors_articles_to_no_author_in_both_sinks(
    stack: Stack,
) -> None:
    # Given an author who commented on another author's article (beside a comment by someone with no author
    # row) and on their own article
    run = uuid.uuid4().hex[:8]
    stack.sql("SET @fanout_disable = 1")
    try:
        leaving = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Leaving {run}")
        staying = stack.sql("INSERT INTO authors (name) VALUES (%s)", f"Staying {run}")
        own = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'draft', %s)",
                        f"own {run}", leaving)  # fmt: skip
        other = stack.sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'draft', %s)",
                          f"other {run}", staying)  # fmt: skip
        for key, commenter, author in ((own, "leaving", leaving), (other, "leaving", leaving),
                                       (other, "guest", None)):  # fmt: skip
            stack.sql("INSERT INTO comments (article_id, commenter, author_id, body) VALUES (%s, %s, %s, 'hi')",
                      key, commenter, author)  # fmt: skip
    finally:
        stack.sql("SET @fanout_disable = NULL")
    publish(stack, [own, other])
    assert in_both_sinks(stack, other, comment_authors_of) == [("leaving", leaving), ("guest", None)]

    # When the author is deleted: the engine deletes their article and sets their comments' author_id to NULL
    stack.sql("DELETE FROM authors WHERE id = %s", leaving)

    # Then the other author's article shows the comment with no author in both sinks, with no repair; their own
    # article is gone
    orphaned = [("leaving", None), ("guest", None)]
    wait_until("the comment with no author in both sinks",
               lambda: in_both_sinks(stack, other, comment_authors_of) == orphaned)  # fmt: skip
    wait_until(f"article {own} gone from both sinks", lambda: gone_from_both_sinks(stack, own))
