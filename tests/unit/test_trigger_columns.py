"""Which columns a trigger reads (fanout.capture.trigger_columns), and what a schema lacks of them (no database)."""

from __future__ import annotations

from fanout.capture.cascades import cascade_triggers
from fanout.capture.trigger_columns import columns_read, created_trigger, missing_columns
from fanout.capture.trigger_sql import capture_trigger
from fanout.model.mapping import default_mappings
from tests.support.foreign_keys import DEMO_KEYS


def test_a_generated_trigger_reads_its_key_through_new_and_old() -> None:
    statement = capture_trigger(default_mappings().tables["posts"], "update", 8)
    name, table, body = created_trigger(statement)  # type: ignore[misc]
    assert (name, table) == ("fanout_posts_after_update_v008", "posts")
    assert columns_read(table, body) == {"posts": {"id"}}


def test_a_cascade_trigger_reads_the_columns_of_every_table_it_joins() -> None:
    [authors] = [t for t in cascade_triggers(default_mappings(), DEMO_KEYS, 8) if t[0] == "authors"]
    _name, table, body = created_trigger(authors[3])  # type: ignore[misc]
    assert columns_read(table, body) == {
        "authors": {"id"},
        "articles": {"id", "author_id"},
        "comments": {"article_id", "author_id"},  # deleted with the articles; set to NULL for the author
        "article_tags": {"article_id"},
    }


def test_missing_columns_compare_names_as_mysql_does_and_leave_out_tables_not_there_yet() -> None:
    body = "BEGIN SET @k = NEW.`Post_ID`; INSERT INTO x SELECT d.`gone` FROM `other` AS d, `later` AS l"
    body += " WHERE l.`c` = NEW.id; END"
    columns = {"posts": {"post_id"}, "other": {"kept"}}
    assert missing_columns("posts", body, columns) == ["other.gone", "posts.id"]


def test_a_statement_that_creates_no_trigger_is_not_one() -> None:
    assert created_trigger("DROP TRIGGER IF EXISTS fanout_posts_after_insert_v008") is None
    assert created_trigger("CREATE TABLE t (id INT)") is None
