"""Capture triggers for the tables that feed composed documents (fanout.model.composition).

Every parent, child, link and link-target table of a document gets an ``AFTER`` trigger per action,
named ``fanout_<table>_feeds_after_<action>_v<version>`` (apart from the triggers of a table that is
also mapped on its own), with the same change-log insert and ring as every capture trigger
(fanout.capture.trigger_sql.trigger_sql). Its payload names, per relation the table feeds, what the row
pointed to after (``new``) and before (``old``) the change (fanout.model.composition_payload)::

    'refs', JSON_ARRAY(JSON_OBJECT('root', 'articles', 'via', 'comments',
                                   'new', JSON_OBJECT('id', NEW.`article_id`),
                                   'old', JSON_OBJECT('id', OLD.`article_id`)))

An update that changes none of the columns any document reads from the table logs nothing: the
documents cannot differ, and a parent's change can fan out to many roots. "Changes" means byte for
byte, not under the column's collation (fanout.capture.changed_values).
"""

from __future__ import annotations

from fanout.capture.changed_values import changed_values_condition
from fanout.capture.trigger_sql import trigger_name, trigger_sql
from fanout.model.composition import Children, Composition, Feed, ManyToMany, Parent
from fanout.model.mapping import ACTIONS, Mappings
from fanout.source.sql import quote_identifier

FEEDS_SUFFIX = "_feeds"
_INDENT = "    "


def _relation(composition: Composition, name: str) -> Parent | Children | ManyToMany:
    return composition.relation(name)


def columns_read(composition: Composition, feed: Feed) -> list[str]:
    """The columns of ``feed.table`` a document reads (a change to any other column cannot change it)."""
    relation = _relation(composition, feed.relation)
    if feed.kind == "parent":
        assert isinstance(relation, Parent)
        return [*relation.fields, *relation.referenced]
    if feed.kind == "child":
        assert isinstance(relation, Children)
        return [*relation.fields, *feed.columns, *(o.column for o in relation.order_by)]
    assert isinstance(relation, ManyToMany)
    if feed.kind == "link":
        return [*feed.columns, *(link for link, _ in relation.on)]
    return [*relation.fields, *relation.referenced, *(o.column for o in relation.order_by)]


def _reference(composition: Composition, feed: Feed, row: str) -> str:
    """``JSON_OBJECT(...)`` of what the row points to: the root's key (child, link) or the referenced columns."""
    if feed.names_roots:
        relation = _relation(composition, feed.relation)
        join = relation.on if isinstance(relation, Children) else relation.through_on  # type: ignore[union-attr]
        pairs = [(root, own) for root, own in join]
    else:
        pairs = [(column, column) for column in feed.columns]
    return "JSON_OBJECT(" + ", ".join(f"'{name}', {row}.{quote_identifier(own)}" for name, own in pairs) + ")"


def feeds_by_table(mappings: Mappings) -> dict[str, list[tuple[Composition, Feed]]]:
    """Every feeding table (in name order) and the (document, feed) pairs it feeds."""
    feeds: dict[str, list[tuple[Composition, Feed]]] = {}
    for name in sorted(mappings.tables):
        composition = mappings.tables[name].composition
        if composition is not None:
            for feed in composition.feeds():
                feeds.setdefault(feed.table, []).append((composition, feed))
    return {table: feeds[table] for table in sorted(feeds)}


def feeding_payload(table: str, feeds: list[tuple[Composition, Feed]], action: str) -> list[str]:
    """The lines of a feeding table's payload ``JSON_OBJECT`` for ``action``, in terms of NEW and OLD."""
    lines = [f"'v', 1, 'action', '{action}', 'table', '{table}',", "'refs', JSON_ARRAY("]
    for n, (composition, feed) in enumerate(feeds):
        sides = []
        if action != "delete":
            sides.append(f"'new', {_reference(composition, feed, 'NEW')}")
        if action != "insert":
            sides.append(f"'old', {_reference(composition, feed, 'OLD')}")
        lines += [
            f"{_INDENT}JSON_OBJECT(",
            f"{_INDENT * 2}'root', '{composition.root}', 'via', '{feed.relation}',",
            *(f"{_INDENT * 2}{side}," for side in sides[:-1]),
            f"{_INDENT * 2}{sides[-1]}",
            f"{_INDENT})" + ("," if n < len(feeds) - 1 else ""),
        ]
    return [*lines, "),", "'ts', UNIX_TIMESTAMP(SYSDATE(6))"]


def feeding_triggers(mappings: Mappings, version: int) -> list[tuple[str, str, str, str, str]]:
    """(table, action, trigger name, CREATE TRIGGER statement, summary line or "") for every feeding table,
    tables in name order, actions in ACTIONS order: the same mapping gives the same text."""
    out: list[tuple[str, str, str, str, str]] = []
    for table, feeds in feeds_by_table(mappings).items():
        described = ", ".join(f"{c.root}.{f.relation} ({f.kind})" for c, f in feeds)
        read = sorted({column for c, f in feeds for column in columns_read(c, f)})
        for i, action in enumerate(ACTIONS):
            lines = feeding_payload(table, feeds, action)
            only_if = changed_values_condition(read) if action == "update" else ""
            name = trigger_name(f"{table}{FEEDS_SUFFIX}", action, version)
            summary = f"--   {table} (feeds {described}): insert, update, delete" if i == 0 else ""
            out.append((table, action, name, trigger_sql(name, table, action, lines, only_if), summary))
    return out
