"""The cascade-trigger generator: which foreign keys get a trigger, the chain's joins, the payloads (no database)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fanout.capture.cascades import MAX_CASCADE_DEPTH, cascade_trigger_name, cascade_triggers
from fanout.capture.foreign_keys import ForeignKey, foreign_keys_from_rows
from fanout.capture.migration_scripts import load_migrations, split_statements
from fanout.capture.triggers import capture_migration, live_triggers
from fanout.model.mapping import Mappings, default_mappings, parse_mappings
from tests.support.files import sqlfluff_lint
from tests.support.foreign_keys import DEMO_KEYS, key
from tests.support.ring_history import ring_per_statement

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "db" / "migrations"


def plain(*tables: str) -> Mappings:
    spec = {"primary_key": [{"column": "id", "type": "int"}], "capture": ["insert", "update", "delete"]}
    return parse_mappings({"tables": {table: spec for table in tables}})


def inserts(sql: str) -> list[str]:
    """Each INSERT ... SELECT of a trigger, as one line of its logged table and its FROM/JOIN/WHERE clauses."""
    found = []
    for block in sql.split("INSERT INTO fanout_change_log (payload)")[1:]:
        table = re.search(r"'table', '(\w+)'", block).group(1)  # type: ignore[union-attr]
        clauses = re.findall(r"^\s*((?:FROM|INNER JOIN|WHERE) .*)$", block.split("FOR UPDATE;")[0], re.MULTILINE)
        found.append(f"{table}: " + " / ".join(clauses))
    return found


def test_foreign_keys_are_assembled_column_by_column_in_ordinal_order() -> None:
    rows = [
        ("fk", "child", "b", "parent", "y", 2, "cascade", "set null"),
        ("fk", "child", "a", "parent", "x", 1, "cascade", "set null"),
    ]
    assert foreign_keys_from_rows(rows) == [
        ForeignKey("fk", "child", ("a", "b"), "parent", ("x", "y"), "CASCADE", "SET NULL")
    ]


def test_only_actions_that_change_captured_rows_get_a_trigger() -> None:
    # Given a restricting key into a captured table, and a cascading key into an uncaptured one
    keys = [key("orders", "customer_id", "customers", on_delete="RESTRICT"), key("audit", "customer_id", "customers")]
    # Then nothing is generated
    assert cascade_triggers(plain("orders"), keys, 8) == []
    # And a cascading key into the captured table is
    [(table, event, name, _sql, _summary)] = cascade_triggers(
        plain("orders"), [key("orders", "customer_id", "customers")], 8
    )
    assert (table, event, name) == ("customers", "delete", "fanout_customers_cascade_before_delete_v008")


def test_a_chain_is_followed_through_uncaptured_tables_with_one_insert_per_level() -> None:
    # Given a -> b -> c -> d, only c and d captured, d set to NULL
    keys = [key("b", "a_id", "a"), key("c", "b_id", "b"), key("d", "c_id", "c", on_delete="SET NULL")]
    [(_t, _e, _n, sql, _s)] = [t for t in cascade_triggers(plain("c", "d"), keys, 8) if t[0] == "a"]

    assert inserts(sql) == [
        "c: FROM `b` AS fanout_d1 / INNER JOIN `c` AS fanout_d2 ON fanout_d1.`id` = fanout_d2.`b_id`"
        " / WHERE fanout_d1.`a_id` = OLD.`id`",
        "d: FROM `b` AS fanout_d1 / INNER JOIN `c` AS fanout_d2 ON fanout_d1.`id` = fanout_d2.`b_id`"
        " / INNER JOIN `d` AS fanout_d3 ON fanout_d2.`id` = fanout_d3.`c_id` / WHERE fanout_d1.`a_id` = OLD.`id`",
    ]
    # And the SET NULL logs an update whose new row has the key column NULL, the rest as it was
    assert "'action', 'update', 'table', 'd'" in sql and "'pk', JSON_OBJECT('id', fanout_d3.`id`)" in sql


def test_an_update_cascade_logs_the_new_key_from_the_referenced_rows_new_values_when_it_changes() -> None:
    keys = [ForeignKey("fk", "labels", ("code",), "shelves", ("code",), "RESTRICT", "CASCADE")]
    composite = parse_mappings(
        {"tables": {"labels": {"primary_key": [{"column": "code", "type": "string"}], "capture": ["update"]}}}
    )
    [(_t, event, _n, sql, _s)] = cascade_triggers(composite, keys, 8)

    assert event == "update"
    assert "'pk', JSON_OBJECT('code', NEW.`code`)" in sql and "'old_pk', JSON_OBJECT('code', fanout_d1.`code`)" in sql
    assert "IF NOT (CAST(OLD.`code` AS BINARY) <=> CAST(NEW.`code` AS BINARY)) THEN" in sql


def test_a_self_referencing_delete_cascade_stops_at_the_engines_depth() -> None:
    [(_t, _e, _n, sql, _s)] = cascade_triggers(plain("nodes"), [key("nodes", "parent_id", "nodes")], 8)
    assert len(inserts(sql)) == MAX_CASCADE_DEPTH
    # and an update cascade never comes back to the table it updates (the engine restricts it)
    update = [ForeignKey("fk", "nodes", ("parent_id",), "nodes", ("id",), "RESTRICT", "CASCADE")]
    assert cascade_triggers(plain("nodes"), update, 8) == []


def test_a_feeding_table_logs_its_refs_payload_and_the_ring_is_once_per_statement() -> None:
    [authors] = [t for t in cascade_triggers(default_mappings(), DEMO_KEYS, 8) if t[0] == "authors"]
    sql = authors[3]
    assert inserts(sql)[0] == "articles: FROM `articles` AS fanout_d1 / WHERE fanout_d1.`author_id` = OLD.`id`"
    assert (
        "'root', 'articles', 'via', 'comments',\n" in sql and "'old', JSON_OBJECT('id', fanout_d2.`article_id`)" in sql
    )
    assert sql.count("lambda_async(") == 1 and "IF fanout_logged > 0 THEN" in sql
    assert len(split_statements(sql)) == 1


def test_long_table_names_keep_a_hash() -> None:
    name = cascade_trigger_name("t" * 60, "delete", 8)
    assert len(name) == 64 and name.endswith("_cascade_before_delete_v008")


def test_the_committed_v008_is_what_the_generator_writes_for_the_bundled_mapping_and_the_demo_keys() -> None:
    earlier = [m for m in load_migrations(MIGRATIONS) if m.version < 8]
    generated = capture_migration(
        default_mappings(), 8, live_triggers(earlier), cascade_triggers(default_mappings(), DEMO_KEYS, 8)
    )
    [committed] = MIGRATIONS.glob("V008__*.sql")
    assert committed.read_text(encoding="utf-8") == ring_per_statement(generated)  # V010 throttles the ring


def test_cascade_triggers_are_sqlfluff_clean(tmp_path: Path) -> None:
    # Given only the cascade triggers of the demo (the whole V008 is over sqlfluff's 20 kB file limit)
    sql = "\n\n".join(t[3] for t in cascade_triggers(default_mappings(), DEMO_KEYS, 2)) + "\n"
    assert len(sql.encode()) < 20_000
    (tmp_path / "V002__cascades.sql").write_text(sql)

    result = sqlfluff_lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_foreign_key_naming_something_no_mapping_could_name_is_refused() -> None:
    odd = ForeignKey("fk", "orders", ("customer_id",), "cust'omers", ("id",), "CASCADE", "RESTRICT")
    with pytest.raises(ValueError, match="foreign key 'fk' names \"cust'omers\", which is not a plain identifier"):
        cascade_triggers(plain("orders"), [odd], 8)
