"""Rows changed by foreign-key cascades reach the sinks: the cascade triggers log them (MySQL 8.0).

The engine fires no trigger for a row it deletes or updates by ``ON DELETE CASCADE`` / ``SET NULL`` /
``ON UPDATE CASCADE``; the generated ``BEFORE`` triggers on the referenced tables log those rows (with the
payload the dependent table's own trigger writes). Each test writes as an application does, takes what the
statement logged in ``fanout_change_log``, hands it to the fetcher as the parser would
(fanout.model.payloads.parse_trigger_payload), and looks at both sinks: no repair, no hand-made change.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanout.capture.cascades import cascade_triggers
from fanout.capture.foreign_keys import read_foreign_keys
from fanout.capture.migrations import MigrationRunner
from fanout.capture.triggers import capture_migration
from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings, parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.aws import dynamodb_sink
from tests.support.indices import delete_index
from tests.support.integration import (
    execute,
    install_capture_triggers,
    lambda_async_bridge,
    lambda_async_calls,
    next_second,
    parser_arn,
    rows,
)
from tests.support.mappings import in_index


class Replication:
    """A schema's writer, what its statements logged, and the fetch path into both sinks."""

    def __init__(self, settings: DatabaseSettings, mappings: Mappings, client: Any, replica_table: Any) -> None:
        self.mappings = mappings
        self.client = client
        self.replica_table = replica_table
        self.writer = connect(settings)
        self.reader = connect(settings)
        self.sinks = [OpenSearchSink(client), dynamodb_sink(replica_table, tombstone_ttl_seconds=60)]
        self.seen = 0

    def sql(self, statement: str, *params: Any) -> int:
        return execute(self.writer, statement, *params)

    def logged(self) -> list[dict[str, Any]]:
        """The payloads logged since the last call, oldest first."""
        found = rows(self.writer, "SELECT id, payload FROM fanout_change_log WHERE id > %s ORDER BY id", self.seen)
        if found:
            self.seen = int(found[-1][0])
        return [json.loads(payload) for _, payload in found]

    def replicate(self) -> list[dict[str, Any]]:
        """Hand everything logged since the last call to the fetcher, as the parser would; the payloads."""
        payloads = self.logged()
        changes: list[Change] = []
        for payload in payloads:
            changes += parse_trigger_payload(json.dumps(payload), self.mappings)
        source = DatabaseSource.over(self.reader)
        Fetcher(self.mappings, source, self.sinks, pages=100, page_size=50).apply(changes)
        return payloads

    def document(self, table: str, key: Any) -> dict[str, Any] | None:
        index = self.mappings.tables[table].opensearch.index
        self.client.indices.refresh(index=index)
        found = self.client.get(index=index, id=str(key), ignore=404)
        return found.get("_source") if found.get("found") else None

    def item(self, table: str, key: Any) -> dict[str, Any]:
        return dict(self.replica_table.get_item(Key={"pk": f"{table}#{key}"}, ConsistentRead=True)["Item"])

    def close(self) -> None:
        for index in {m.opensearch.index for m in self.mappings.tables.values() if m.opensearch.index}:
            delete_index(self.client, index)
        self.writer.close()
        self.reader.close()


# ---- the demo schema: authors -> articles -> comments, article_tags (all ON DELETE CASCADE)


@pytest.fixture
def demo(db_settings: DatabaseSettings, opensearch_endpoint: str, replica_table: Any) -> Iterator[Replication]:
    install_capture_triggers(db_settings)  # db/migrations, the cascade triggers included
    articles = in_index(default_mappings().tables["articles"], f"articles-{uuid.uuid4().hex[:8]}")
    mappings = Mappings({**default_mappings().tables, "articles": articles})
    replication = Replication(db_settings, mappings, make_client(opensearch_endpoint), replica_table)
    yield replication
    replication.close()


def test_deleting_an_author_removes_every_article_of_theirs_from_both_sinks_in_one_ring(demo: Replication) -> None:
    # Given an author of 10 published articles, each commented and tagged, and another author's article
    ann = demo.sql("INSERT INTO authors (name) VALUES ('Ann')")
    bob = demo.sql("INSERT INTO authors (name) VALUES ('Bob')")
    tag = demo.sql("INSERT INTO tags (name) VALUES ('kept')")
    theirs = []
    for n in range(10):
        article = demo.sql(
            "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)", f"a{n}", ann
        )
        demo.sql("INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'c', 'hello')", article)
        demo.sql("INSERT INTO article_tags VALUES (%s, %s)", article, tag)
        theirs.append(article)
    other = demo.sql("INSERT INTO articles (title, body, status, author_id) VALUES ('b', 'b', 'published', %s)", bob)
    demo.sql("INSERT INTO article_tags VALUES (%s, %s)", other, tag)
    demo.replicate()
    assert all(demo.document("articles", a) is not None for a in [*theirs, other])
    rings = len(lambda_async_calls(demo.writer))
    next_second(demo.writer)  # the inserts above may have spent this second's ring (one a second per schema)

    # When the author is deleted, and the engine cascades to their articles, comments and tag links
    demo.sql("DELETE FROM authors WHERE id = %s", ann)
    assert rows(demo.writer, "SELECT COUNT(*) FROM articles WHERE author_id = %s", ann) == [(0,)]
    payloads = demo.replicate()

    # Then the statement logged every row the engine deleted, as each table's own trigger would have
    deleted = sorted(p["pk"]["id"] for p in payloads if p["table"] == "articles" and p["action"] == "delete")
    assert deleted == theirs
    assert sum(1 for p in payloads if p["table"] == "comments") == 10
    assert sum(1 for p in payloads if p["table"] == "article_tags") == 10
    # And it rang the parser once, for the whole statement
    assert len(lambda_async_calls(demo.writer)) == rings + 1
    # And no article of theirs is left in either sink, while the other author's is intact
    for article in theirs:
        assert demo.document("articles", article) is None
        assert demo.item("articles", article)["_deleted"] is True
    assert demo.document("articles", other)["author"] == {"id": bob, "name": "Bob"}  # type: ignore[index]


def test_deleting_a_tag_rebuilds_the_articles_it_tagged(demo: Replication) -> None:
    # Given an article with two tags
    article = demo.sql("INSERT INTO articles (title, body, status) VALUES ('t', 'b', 'published')")
    red = demo.sql("INSERT INTO tags (name) VALUES ('red')")
    blue = demo.sql("INSERT INTO tags (name) VALUES ('blue')")
    demo.sql("INSERT INTO article_tags VALUES (%s, %s), (%s, %s)", article, red, article, blue)
    demo.replicate()
    assert demo.document("articles", article)["tags"] == ["blue", "red"]  # type: ignore[index]

    # When a tag is deleted and its links go with it
    demo.sql("DELETE FROM tags WHERE id = %s", red)
    demo.replicate()

    # Then the article no longer lists it, in either sink
    assert demo.document("articles", article)["tags"] == ["blue"]  # type: ignore[index]
    assert demo.item("articles", article)["tags"] == ["blue"]


def test_a_cascade_rolled_back_with_its_statement_leaves_nothing_logged(demo: Replication) -> None:
    # Given an author with an article
    ann = demo.sql("INSERT INTO authors (name) VALUES ('Ann')")
    demo.sql("INSERT INTO articles (title, body, status, author_id) VALUES ('t', 'b', 'published', %s)", ann)
    demo.logged()
    before = demo.seen

    # When the delete runs in a transaction that rolls back
    demo.writer.begin()
    demo.sql("DELETE FROM authors WHERE id = %s", ann)
    assert [p["table"] for p in demo.logged()] == ["articles", "authors"]  # the cascade's row, then the author's
    demo.seen = before
    demo.writer.rollback()

    # Then nothing was logged: the BEFORE trigger's rows went with the transaction
    assert demo.logged() == []


# ---- a schema of its own: a three-level chain, SET NULL and ON UPDATE CASCADE

CHAIN_SCHEMA = [
    "CREATE TABLE shelves (id INT NOT NULL PRIMARY KEY, code VARCHAR(20) NOT NULL, UNIQUE KEY shelves_code (code))",
    # books is not replicated: the chain passes through it
    "CREATE TABLE books (id INT NOT NULL PRIMARY KEY, shelf_code VARCHAR(20) NOT NULL,"
    " CONSTRAINT books_shelf FOREIGN KEY (shelf_code) REFERENCES shelves (code)"
    " ON DELETE CASCADE ON UPDATE CASCADE)",
    "CREATE TABLE chapters (id INT NOT NULL PRIMARY KEY, book_id INT NOT NULL, title VARCHAR(50) NOT NULL,"
    " CONSTRAINT chapters_book FOREIGN KEY (book_id) REFERENCES books (id) ON DELETE CASCADE)",
    "CREATE TABLE notes (id INT NOT NULL PRIMARY KEY, chapter_id INT NULL, text VARCHAR(50) NOT NULL,"
    " CONSTRAINT notes_chapter FOREIGN KEY (chapter_id) REFERENCES chapters (id) ON DELETE SET NULL)",
    # shelf_code is part of the key: an ON UPDATE CASCADE changes the replicated row's key
    "CREATE TABLE labels (shelf_code VARCHAR(20) NOT NULL, n INT NOT NULL, PRIMARY KEY (shelf_code, n),"
    " CONSTRAINT labels_shelf FOREIGN KEY (shelf_code) REFERENCES shelves (code) ON UPDATE CASCADE)",
]


def _table(name: str, key: list[dict[str, str]], columns: list[str]) -> dict[str, Any]:
    return {
        "primary_key": key,
        "capture": ["insert", "update", "delete"],
        "columns": columns,
        "opensearch": {"enabled": True, "index": f"{name}-{uuid.uuid4().hex[:8]}"},
        "dynamodb": {"enabled": True},
    }


@pytest.fixture
def chain(
    db_settings: DatabaseSettings, opensearch_endpoint: str, replica_table: Any, tmp_path: Path
) -> Iterator[Replication]:
    conn = connect(db_settings)
    for statement in CHAIN_SCHEMA:
        execute(conn, statement)
    mappings = parse_mappings(
        {
            "tables": {
                "chapters": _table("chapters", [{"column": "id", "type": "int"}], ["id", "book_id", "title"]),
                "notes": _table("notes", [{"column": "id", "type": "int"}], ["id", "chapter_id", "text"]),
                "labels": _table(
                    "labels",
                    [{"column": "shelf_code", "type": "string"}, {"column": "n", "type": "int"}],
                    ["shelf_code", "n"],
                ),
            }
        }
    )
    keys = read_foreign_keys(conn, db_settings.name)
    conn.close()
    (tmp_path / "V001__chain.sql").write_text(capture_migration(mappings, 1, [], cascade_triggers(mappings, keys, 1)))
    arn = parser_arn(db_settings.name)
    lambda_async_bridge().configure(arn, deliver=False)
    MigrationRunner(lambda: connect(db_settings), tmp_path, {"parser_function_arn": arn}, applied_by="test").migrate()
    replication = Replication(db_settings, mappings, make_client(opensearch_endpoint), replica_table)
    yield replication
    replication.close()


def test_a_three_level_cascade_and_a_set_null_below_it_reach_the_sinks(chain: Replication) -> None:
    # Given a shelf -> book -> two chapters -> notes, and a chapter on another shelf
    chain.sql("INSERT INTO shelves VALUES (1, 'A'), (2, 'B')")
    chain.sql("INSERT INTO books VALUES (10, 'A'), (20, 'B')")
    chain.sql("INSERT INTO chapters VALUES (100, 10, 'one'), (101, 10, 'two'), (200, 20, 'other')")
    chain.sql("INSERT INTO notes VALUES (1000, 100, 'n1'), (1001, 101, 'n2'), (2000, 200, 'kept')")
    chain.replicate()
    assert chain.document("notes", 1000) == {"id": 1000, "chapter_id": 100, "text": "n1"}

    # When the shelf is deleted: its book, the book's chapters (two levels down) go, the notes lose their chapter
    chain.sql("DELETE FROM shelves WHERE id = 1")
    payloads = chain.replicate()

    # Then each was logged as its own trigger would have, and both sinks follow
    assert sorted((p["table"], p["action"], p["pk"]["id"]) for p in payloads) == [
        ("chapters", "delete", 100),
        ("chapters", "delete", 101),
        ("notes", "update", 1000),
        ("notes", "update", 1001),
    ]
    for chapter in (100, 101):
        assert chain.document("chapters", chapter) is None
        assert chain.item("chapters", chapter)["_deleted"] is True
    assert chain.document("notes", 1000) == {"id": 1000, "chapter_id": None, "text": "n1"}
    assert chain.item("notes", 1001)["chapter_id"] is None
    assert chain.document("chapters", 200) is not None and chain.document("notes", 2000)["chapter_id"] == 200  # type: ignore[index]


def test_an_on_update_cascade_that_changes_a_replicated_key_moves_the_row_in_the_sinks(chain: Replication) -> None:
    # Given labels keyed by their shelf's code
    chain.sql("INSERT INTO shelves VALUES (1, 'A')")
    chain.sql("INSERT INTO labels VALUES ('A', 1), ('A', 2)")
    chain.replicate()
    assert chain.document("labels", "A|1") == {"shelf_code": "A", "n": 1}

    # When the shelf's code changes and the engine carries it into the labels' key
    chain.sql("UPDATE shelves SET code = 'Z' WHERE id = 1")
    payloads = chain.replicate()

    # Then each label was logged as an update from its old key to its new one
    assert sorted((p["pk"]["shelf_code"], p["old_pk"]["shelf_code"], p["pk"]["n"]) for p in payloads) == [
        ("Z", "A", 1),
        ("Z", "A", 2),
    ]
    # And the sinks hold the labels under their new keys only
    for n in (1, 2):
        assert chain.document("labels", f"A|{n}") is None and chain.item("labels", f"A|{n}")["_deleted"] is True
        assert chain.document("labels", f"Z|{n}") == {"shelf_code": "Z", "n": n}
    # And an update that leaves the code alone logs nothing
    chain.sql("UPDATE shelves SET id = 5 WHERE id = 1")
    assert chain.logged() == []
