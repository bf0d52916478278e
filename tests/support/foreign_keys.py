"""Foreign keys as information_schema lists them, for the generator's tests (no database)."""

from __future__ import annotations

from fanout.capture.foreign_keys import ForeignKey


def key(
    table: str, column: str, referenced: str, on_delete: str = "CASCADE", on_update: str = "RESTRICT"
) -> ForeignKey:
    """``table(column)`` referencing ``referenced(id)``, named ``<table>_fk``."""
    return ForeignKey(f"{table}_fk", table, (column,), referenced, ("id",), on_delete, on_update)


# local/demo_schema.sql's foreign keys
DEMO_KEYS = [
    key("article_tags", "article_id", "articles", on_update="NO ACTION"),
    key("article_tags", "tag_id", "tags", on_update="NO ACTION"),
    key("articles", "author_id", "authors", on_update="NO ACTION"),
    key("comments", "article_id", "articles", on_update="NO ACTION"),
    key("comments", "author_id", "authors", on_delete="SET NULL", on_update="NO ACTION"),
    key("tags", "group_id", "tag_groups", on_update="NO ACTION"),
]
