"""Composed documents against MySQL 8.0, a real OpenSearch node and DynamoDB on ministack.

An ``articles`` document (the bundled mapping) holds its author (a parent), its comments (children,
ordered) and its tags (many-to-many through ``article_tags``), and exists only while the article is
published. Each relation kind is changed, and the changes are handed to the fetcher as the parser hands
them (fanout.model.payloads.parse_trigger_payload of the payload the capture trigger writes): the sinks then
hold the document composed from the committed rows.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from fanout.deadline import Deadline
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.pipeline.fetcher import Fetcher, FetchFailed, FetchReport
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.composition_read import compose_rows
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from fanout.source.rows import SourceReadError
from tests.support.aws import dynamodb_sink
from tests.support.fakes import CallbackQueue, RecordingQueue
from tests.support.indices import delete_index
from tests.support.locks import row_locks_held, seen_waiting
from tests.support.mappings import in_index

TS = 1764240000.5


@pytest.fixture
def world(db_settings: Any, opensearch_endpoint: str, replica_table: Any) -> Iterator[dict[str, Any]]:
    articles = in_index(default_mappings().tables["articles"], f"articles-{uuid.uuid4().hex[:8]}")
    mappings = Mappings({**default_mappings().tables, "articles": articles})
    client = make_client(opensearch_endpoint)
    writer = connect(db_settings)
    reader = connect(db_settings)
    sinks = [OpenSearchSink(client), dynamodb_sink(replica_table, tombstone_ttl_seconds=60)]

    def fetch(changes: list[Change], queue: ChangeQueue | None = None, pages: int = 1) -> FetchReport:
        """One fetcher invocation; with ``queue``, at most ``pages`` pages of roots, the rest sent to it."""
        source = DatabaseSource.over(reader)
        return Fetcher(mappings, source, sinks, continuations=queue, pages=pages, page_size=2).apply(changes)

    def sql(statement: str, *params: Any) -> int:
        with writer.cursor() as cur:
            cur.execute(statement, params)
            return int(cur.lastrowid or 0)

    def document(article: int) -> dict[str, Any] | None:
        client.indices.refresh(index=articles.opensearch.index)
        found = client.get(index=articles.opensearch.index, id=str(article), ignore=404)
        return found.get("_source") if found.get("found") else None

    def item(article: int) -> dict[str, Any]:
        return dict(replica_table.get_item(Key={"pk": f"articles#{article}"}, ConsistentRead=True)["Item"])

    yield {"fetch": fetch, "sql": sql, "document": document, "item": item, "mappings": mappings, "db": db_settings}
    delete_index(client, articles.opensearch.index)
    writer.close()
    reader.close()


def root(article: int) -> Change:
    return Change("articles", (("id", article),), "update", 1)


def feed(mappings: Mappings, table: str, action: str, refs: list[dict[str, Any]]) -> list[Change]:
    """The changes the parser makes of a feeding table's trigger payload."""
    return parse_trigger_payload({"v": 1, "action": action, "table": table, "refs": refs, "ts": TS}, mappings)


def seed(world: dict[str, Any]) -> dict[str, int]:
    sql = world["sql"]
    ann = sql("INSERT INTO authors (name) VALUES ('Ann Author')")
    bob = sql("INSERT INTO authors (name) VALUES ('Bob')")
    first = sql("INSERT INTO articles (title, body, status, author_id) VALUES ('First', 'b', 'published', %s)", ann)
    second = sql("INSERT INTO articles (title, body, status, author_id) VALUES ('Second', 'b', 'published', %s)", ann)
    third = sql("INSERT INTO articles (title, body, status, author_id) VALUES ('Third', 'b', 'published', %s)", ann)
    red = sql("INSERT INTO tags (name) VALUES ('red')")
    blue = sql("INSERT INTO tags (name) VALUES ('blue')")
    sql("INSERT INTO article_tags VALUES (%s, %s), (%s, %s), (%s, %s)", first, red, first, blue, second, red)
    sql("INSERT INTO comments (article_id, commenter, body, created_at) VALUES (%s, 'c', 'later', '2026-01-02')", first)
    c1 = sql("INSERT INTO comments (article_id, commenter, body, created_at) VALUES (%s, 'c', 'early', '2026-01-01')",
             first)  # fmt: skip
    world["fetch"]([root(first), root(second), root(third)])
    return {"ann": ann, "bob": bob, "first": first, "second": second, "third": third, "red": red, "blue": blue,
            "c1": c1}  # fmt: skip


def test_a_document_holds_its_parent_children_and_tags_in_both_sinks(world: dict[str, Any]) -> None:
    ids = seed(world)

    doc = world["document"](ids["first"])
    assert doc is not None
    assert doc["title"] == "First" and doc["author"] == {"id": ids["ann"], "name": "Ann Author"}
    assert [c["body"] for c in doc["comments"]] == ["early", "later"]  # ordered by created_at
    assert doc["tags"] == ["blue", "red"]  # ordered by the target's field
    assert world["document"](ids["third"])["comments"] == [] and world["document"](ids["third"])["tags"] == []
    # DynamoDB gets the composed item ("dynamodb": {"item": "document"})
    item = world["item"](ids["first"])
    assert item["author"]["name"] == "Ann Author" and item["tags"] == ["blue", "red"]
    assert [c["body"] for c in item["comments"]] == ["early", "later"]


def test_a_comment_moved_between_articles_rebuilds_both(world: dict[str, Any]) -> None:
    ids = seed(world)
    world["sql"]("UPDATE comments SET article_id = %s WHERE id = %s", ids["second"], ids["c1"])

    ref = {"root": "articles", "via": "comments", "new": {"id": ids["second"]}, "old": {"id": ids["first"]}}
    changes = feed(world["mappings"], "comments", "update", [ref])
    assert {c.key for c in changes} == {(("id", ids["first"]),), (("id", ids["second"]),)}
    world["fetch"](changes)

    assert [c["body"] for c in world["document"](ids["first"])["comments"]] == ["later"]
    assert [c["body"] for c in world["document"](ids["second"])["comments"]] == ["early"]


def test_renaming_an_author_rebuilds_every_article_of_theirs(world: dict[str, Any]) -> None:
    ids = seed(world)
    world["sql"]("UPDATE authors SET name = 'Ann Renamed' WHERE id = %s", ids["ann"])

    ref = {"root": "articles", "via": "author", "new": {"id": ids["ann"]}, "old": {"id": ids["ann"]}}
    changes = feed(world["mappings"], "authors", "update", [ref])
    assert [(c.via, c.key) for c in changes] == [("author", (("id", ids["ann"]),))]
    world["fetch"](changes)  # three roots, in pages of two

    for article in (ids["first"], ids["second"], ids["third"]):
        assert world["document"](article)["author"]["name"] == "Ann Renamed"
    assert world["item"](ids["third"])["author"]["name"] == "Ann Renamed"


def test_a_tag_renamed_or_unlinked_rebuilds_the_articles_it_tags(world: dict[str, Any]) -> None:
    ids = seed(world)
    world["sql"]("UPDATE tags SET name = 'crimson' WHERE id = %s", ids["red"])
    renamed = {"root": "articles", "via": "tags", "new": {"id": ids["red"]}, "old": {"id": ids["red"]}}
    world["fetch"](feed(world["mappings"], "tags", "update", [renamed]))
    assert world["document"](ids["first"])["tags"] == ["blue", "crimson"]
    assert world["document"](ids["second"])["tags"] == ["crimson"]

    world["sql"]("DELETE FROM article_tags WHERE article_id = %s AND tag_id = %s", ids["first"], ids["blue"])
    world["fetch"](feed(world["mappings"], "article_tags", "delete",
                        [{"root": "articles", "via": "tags", "old": {"id": ids["first"]}}]))  # fmt: skip
    assert world["document"](ids["first"])["tags"] == ["crimson"]


def test_unpublishing_removes_the_document_and_republishing_brings_it_back(world: dict[str, Any]) -> None:
    ids = seed(world)
    world["sql"]("UPDATE articles SET status = 'draft' WHERE id = %s", ids["second"])
    world["fetch"]([root(ids["second"])])
    assert world["document"](ids["second"]) is None
    assert world["item"](ids["second"])["_deleted"] is True

    # a change to a related row of a filtered-out root does not bring it back
    world["sql"]("UPDATE authors SET name = 'Ann Again' WHERE id = %s", ids["ann"])
    renamed = {"root": "articles", "via": "author", "new": {"id": ids["ann"]}, "old": {"id": ids["ann"]}}
    world["fetch"](feed(world["mappings"], "authors", "update", [renamed]))
    assert world["document"](ids["second"]) is None

    world["sql"]("UPDATE articles SET status = 'published' WHERE id = %s", ids["second"])
    world["fetch"]([root(ids["second"])])
    assert world["document"](ids["second"])["author"]["name"] == "Ann Again"
    assert world["item"](ids["second"])["_deleted"] is False


def test_an_article_without_an_author_has_a_null_author(world: dict[str, Any]) -> None:
    article = world["sql"]("INSERT INTO articles (title, body, status) VALUES ('Anon', 'b', 'published')")
    world["fetch"]([root(article)])
    assert world["document"](article)["author"] is None


def deliver_with_continuations(world: dict[str, Any], change: Change, after_each: Callable[[], Any]) -> None:
    """The change, then each continuation it hands on, one invocation each, as the fetch queue would deliver them."""
    pending = [change]
    while pending:
        handed_on = RecordingQueue()
        world["fetch"]([pending.pop(0)], handed_on)
        after_each()
        pending += [change for batch in handed_on.batches for change in batch]


def renamed_author_of(world: dict[str, Any], published: int) -> tuple[Change, list[int]]:
    """An author of ``published`` articles (and a draft), their documents composed, then renamed to 'Renamed':
    the change via ``author`` the parser makes of it, and the articles."""
    sql = world["sql"]
    author = sql("INSERT INTO authors (name) VALUES ('Prolific')")
    articles = [sql("INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                    f"a{i}", author) for i in range(published)]  # fmt: skip
    sql("INSERT INTO articles (title, body, status, author_id) VALUES ('draft', 'b', 'draft', %s)", author)
    world["fetch"]([root(article) for article in articles])
    sql("UPDATE authors SET name = 'Renamed' WHERE id = %s", author)
    ref = {"root": "articles", "via": "author", "new": {"id": author}, "old": {"id": author}}
    (change,) = feed(world["mappings"], "authors", "update", [ref])
    return change, articles


def test_a_parent_with_more_roots_than_an_invocation_rebuilds_them_all_through_continuations(
    world: dict[str, Any],
) -> None:
    # Given an author of 7 published articles (and a draft), renamed, and invocations of one page of two roots
    change, articles = renamed_author_of(world, 7)

    # When the author's change is delivered, then each continuation it hands on
    renamed_after: list[int] = []
    deliver_with_continuations(world, change, lambda: renamed_after.append(
        sum(world["document"](a)["author"]["name"] == "Renamed" for a in articles)))  # fmt: skip

    # Then every article is rebuilt, two a time (4 invocations: the last page is not full)
    assert renamed_after == [2, 4, 6, 7]
    assert all(world["item"](a)["author"]["name"] == "Renamed" for a in articles)


def test_a_continuation_that_cannot_be_handed_on_fails_the_change_instead_of_dropping_roots(
    world: dict[str, Any],
) -> None:
    # Given an author of 5 articles, renamed
    change, articles = renamed_author_of(world, 5)

    def unreachable(changes: Sequence[Change]) -> None:
        raise RuntimeError("the fetch queue is unreachable")

    # When its invocation cannot hand the rest on
    with pytest.raises(FetchFailed) as failed:
        world["fetch"]([change], CallbackQueue(unreachable))

    # Then the change itself failed (the queue retries it), with the first page rebuilt and the rest not dropped:
    assert ("articles", change.key) in failed.value.report.failed_keys
    assert [world["document"](a)["author"]["name"] for a in articles] == ["Renamed"] * 2 + ["Prolific"] * 3
    # its retry, once the queue takes continuations again, ends with every article rebuilt
    deliver_with_continuations(world, change, lambda: None)
    assert [world["document"](a)["author"]["name"] for a in articles] == ["Renamed"] * 5


def test_the_composed_read_starts_no_wait_for_a_writer_that_does_not_fit_in_the_time_left(
    world: dict[str, Any], sessions: Callable[..., Any]
) -> None:
    # Given a writer holding an uncommitted change to a comment of the first article, and a reader whose wait
    # for a writer may last 5 s
    ids = seed(world)
    writer, reader = sessions(autocommit=False), sessions()
    with writer.cursor() as cur:
        cur.execute("UPDATE comments SET body = 'edited' WHERE id = %s", (ids["c1"],))
    with reader.cursor() as cur:
        cur.execute("SET SESSION innodb_lock_wait_timeout = 5")
    mapping = world["mappings"].tables["articles"]
    try:
        # When the composed read of that article has 3 s left
        (state,) = compose_rows(reader, mapping, [root(ids["first"])], Deadline.after(3))
    finally:
        writer.rollback()

    # Then it does not start the wait (it would outlast the time): the root is a retryable error at once, not a
    # lock-wait timeout after 5 s
    assert isinstance(state, SourceReadError) and "out of time" in str(state), state


def test_the_composed_read_waits_out_a_writer_without_holding_other_locks(
    world: dict[str, Any], sessions: Callable[..., Any]
) -> None:
    # Given a writer holding an uncommitted change to a comment of the first article
    ids = seed(world)
    writer, reader, watcher, other = sessions(autocommit=False), sessions(), sessions(), sessions(autocommit=False)
    with writer.cursor() as cur:
        cur.execute("UPDATE comments SET body = 'edited' WHERE id = %s", (ids["c1"],))
    composed: list[Any] = []
    mapping = world["mappings"].tables["articles"]
    thread = threading.Thread(target=lambda: composed.extend(compose_rows(reader, mapping, [root(ids["first"])])))
    thread.start()
    try:
        # When the composition is seen waiting: FOR SHARE NOWAIT met the lock (3572), it rolled back, and it
        # waits on that one relation alone, in a transaction of its own
        waits = seen_waiting(watcher, reader.thread_id(), alive=thread.is_alive)
        assert {table for table, _ in waits} == {"comments"}, waits
        # ... it holds no lock on the article row (a waiting read in the composing transaction would): another
        # writer can update it meanwhile, without waiting (innodb_lock_wait_timeout 1: 1205 if it had to)
        assert [held for held in row_locks_held(watcher, reader.thread_id()) if held[0] != "comments"] == []
        with other.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute("UPDATE articles SET title = 'Retitled' WHERE id = %s", (ids["first"],))
        other.commit()
        writer.commit()
    finally:
        writer.rollback()  # nothing left to undo once committed; on a failure, it lets the reader go
        thread.join(timeout=60)
    # Then the composition has the committed state of every row
    (state,) = composed
    assert state.row["title"] == "Retitled"
    assert [c["body"] for c in state.row["comments"]] == ["edited", "later"]
