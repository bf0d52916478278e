"""A composed document's lists have a total order, on MySQL 8.0: the same rows give the same list on every read.

Values a collation calls equal ('Red'/'red', 'e'/'é'/'E' under utf8mb4_unicode_ci) tie under ``order_by`` and
under the fields; the composed read breaks the tie by their bytes, then by the related row's key
(fanout.source.composition_read). The rows are inserted so that the engine's own order of the ties (by key) is the
reverse of the byte order: a read without the tie-break returns them in another order than the documented one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import Mappings, parse_mappings
from fanout.operations.backfill import BackfillJob, run_backfill
from fanout.source.composition_read import compose_rows
from fanout.source.connection import connect
from tests.support.backfill import Harness

ARTICLES = 12
# Inserted in this order (ids ascending): each collation-equal group has its byte-greatest spelling first.
TAGS = ["red", "Red", "RED", "é", "e", "E", "blue"]
# Byte order within each group, groups in the collation's order.
TAGS_IN_ORDER = ["blue", "E", "e", "é", "RED", "Red", "red"]
# Comments of one instant whose fields tie under the collation: ordered by created_at, then by their bytes.
COMMENTERS = ["ann", "Ann", "ANN"]
COMMENTERS_IN_ORDER = ["ANN", "Ann", "ann"]


def seed(h: Harness) -> None:
    """Published articles, each tagged with every tag and commented on by every commenter at one instant."""
    h.execute("INSERT INTO tags (id, name) VALUES " + ", ".join(f"({i + 1}, %s)" for i in range(len(TAGS))), TAGS)
    h.execute("INSERT INTO articles (id, title, body, status) VALUES "
              + ", ".join(f"({a}, 't', 'b', 'published')" for a in range(1, ARTICLES + 1)))  # fmt: skip
    h.execute("INSERT INTO article_tags (article_id, tag_id) VALUES "
              + ", ".join(f"({a}, {t})" for a in range(1, ARTICLES + 1) for t in range(1, len(TAGS) + 1)))  # fmt: skip
    values = [(a, name) for a in range(1, ARTICLES + 1) for name in COMMENTERS]
    rows = ", ".join(["(%s, %s, 'same', '2026-01-01')"] * len(values))
    h.execute(f"INSERT INTO comments (article_id, commenter, body, created_at) VALUES {rows}",  # noqa: S608
              [v for pair in values for v in pair])  # fmt: skip


def commenters_only(mappings: Mappings) -> Mappings:
    """The bundled articles document with comments showing only who and what (no id to tell equal rows apart)."""
    articles = mappings.tables["articles"]
    assert articles.composition is not None
    (comments,) = articles.composition.children
    narrowed = replace(comments, fields=("commenter", "body"))
    composition = replace(articles.composition, children=(narrowed,))
    return Mappings({**mappings.tables, "articles": replace(articles, composition=composition)})


def test_collation_equal_values_read_in_one_order_over_fresh_connections(harness: Harness) -> None:
    # Given articles whose tags and comments tie under the collation
    h = harness
    seed(h)
    mapping = commenters_only(h.mappings).tables["articles"]
    roots = [Change("articles", (("id", a),), "update", 1) for a in range(1, ARTICLES + 1)]

    # When the documents are composed 20 times, each on a fresh connection (the chunk of all roots, and one root)
    reads = []
    for _ in range(20):
        conn = connect(h.settings)
        try:
            chunk = [state.row for state in compose_rows(conn, mapping, roots)]  # type: ignore[union-attr]
            (alone,) = compose_rows(conn, mapping, roots[-1:])
        finally:
            conn.close()
        reads.append([(row["tags"], [c["commenter"] for c in row["comments"]]) for row in chunk])
        assert (alone.row["tags"], [c["commenter"] for c in alone.row["comments"]]) == reads[-1][-1]  # type: ignore[union-attr]

    # Then every read is the same, in the documented order
    assert all(read == reads[0] for read in reads)
    assert reads[0] == [(TAGS_IN_ORDER, COMMENTERS_IN_ORDER)] * ARTICLES


def test_reconcile_over_collation_equal_lists_is_clean_run_after_run(harness: Harness) -> None:
    # Given the articles replicated by the fetch path (a backfill, pages of 5 roots)
    h = harness
    seed(h)
    job = run_backfill(h.conn, BackfillJob("articles"), h.fetcher(), batch_size=5)
    assert (job.status, job.rows_done) == ("done", ARTICLES)

    # When reconcile compares them, 20 times
    reports = [h.reconcile(tables=["articles"]) for _ in range(20)]

    # Then every run agrees, having checked every article in both sinks
    assert [report.drift for report in reports] == [0] * 20, reports[0].summary()
    assert all(report.agrees for report in reports)
    assert {report.tables["articles"][sink].checked for report in reports for sink in ("opensearch", "dynamodb")} == {
        ARTICLES
    }


def test_the_tie_break_follows_a_descending_order(harness: Harness) -> None:
    # Given tags inserted in byte order (the engine's order of the ties, by key), ordered by name descending
    h = harness
    ascending = ["blue", "E", "e", "é", "RED", "Red", "red"]
    h.execute("INSERT INTO tags (id, name) VALUES " + ", ".join(f"({i + 1}, %s)" for i in range(len(ascending))),
              ascending)  # fmt: skip
    h.execute("INSERT INTO articles (id, title, body, status) VALUES (1, 't', 'b', 'published')")
    h.execute("INSERT INTO article_tags (article_id, tag_id) VALUES "
              + ", ".join(f"(1, {t})" for t in range(1, len(ascending) + 1)))  # fmt: skip
    spec: dict[str, Any] = {
        "primary_key": [{"column": "id", "type": "int"}],
        "columns": ["id", "title"],
        "document": {"many_to_many": [{"name": "tags", "through": "article_tags", "through_on": {"id": "article_id"},
                                       "table": "tags", "on": {"tag_id": "id"}, "fields": ["name"],
                                       "order_by": [{"column": "name", "direction": "desc"}]}]},
    }  # fmt: skip
    mapping = parse_mappings({"tables": {"articles": spec}}).tables["articles"]

    # When the article is composed
    (state,) = compose_rows(h.reader, mapping, [Change("articles", (("id", 1),), "update", 1)])

    # Then the groups and the bytes within each run descending
    assert state.row is not None
    assert state.row["tags"] == list(reversed(ascending))
