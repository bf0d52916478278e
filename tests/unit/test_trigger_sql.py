"""The capture-trigger generator: names, payload SQL, determinism, replacing earlier triggers (no database)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fanout.capture.cascades import cascade_triggers
from fanout.capture.migration_scripts import MigrationError, load_migrations, split_statements
from fanout.capture.names import CHANGE_LOG_TABLE, drain_lock_name
from fanout.capture.trigger_sql import capture_trigger, trigger_name
from fanout.capture.triggers import capture_migration, live_triggers, write_capture_migration
from fanout.model.mapping import Mappings, parse_mappings
from tests.support.files import sqlfluff_lint
from tests.support.foreign_keys import DEMO_KEYS
from tests.support.ring_history import ring_per_statement

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "db" / "migrations"
BUNDLED = json.loads((REPO / "layers" / "common" / "fanout" / "tables.json").read_text(encoding="utf-8"))
# The bundled mapping before composed documents (V007): what V006 was generated from.
BUNDLED_BEFORE_DOCUMENTS = {name: spec for name, spec in BUNDLED["tables"].items() if "document" not in spec}


def bundled_before_comment_authors() -> dict[str, object]:
    """The bundled mapping V007 was generated from: a comment's ``author_id`` (the demo's SET NULL) came with V008."""
    tables = json.loads(json.dumps(BUNDLED["tables"]))
    [comments] = tables["articles"]["document"]["children"]
    comments["fields"] = [f for f in comments["fields"] if f != "author_id"]
    return tables


ORDERS = {
    "primary_key": [{"column": "shop", "type": "string"}, {"column": "number", "type": "int"}],
    "capture": ["delete", "update"],
}
KEYWORDS = {"primary_key": [{"column": "key", "type": "int"}], "capture": ["insert"]}


def mappings(tables: dict[str, object]) -> Mappings:
    return parse_mappings({"tables": tables})


def created_triggers(sql: str) -> list[str]:
    return re.findall(r"^CREATE TRIGGER (\S+)", sql, flags=re.MULTILINE)


def dropped_triggers(sql: str) -> list[str]:
    return re.findall(r"^DROP TRIGGER IF EXISTS (\S+);", sql, flags=re.MULTILINE)


def test_trigger_names_carry_table_action_and_version() -> None:
    assert trigger_name("posts", "insert", 3) == "fanout_posts_after_insert_v003"
    assert trigger_name("posts", "delete", 1234) == "fanout_posts_after_delete_v1234"


def test_a_long_table_name_is_shortened_with_a_hash_to_fit_64_characters() -> None:
    # Given two 64-character table names that share a long prefix
    first, second = "a" * 60 + "_one", "a" * 60 + "_two"

    # When
    names = [trigger_name(table, "update", 12) for table in (first, second)]

    # Then both fit, differ, and are the same every time
    assert all(len(name) <= 64 for name in names)
    assert names[0] != names[1]
    assert names == [trigger_name(table, "update", 12) for table in (first, second)]
    assert all(name.startswith("fanout_aaaa") and name.endswith("_after_update_v012") for name in names)


def test_the_update_trigger_sends_the_new_and_the_old_key_of_a_composite_key() -> None:
    # Given a table keyed by (shop, number)
    orders = mappings({"orders": ORDERS}).tables["orders"]

    # When
    update = capture_trigger(orders, "update", 5)
    delete = capture_trigger(orders, "delete", 5)

    # Then the payload has the format-1 fields, the key columns in mapping order
    assert "AFTER UPDATE ON `orders` FOR EACH ROW" in update
    assert "'v', 1, 'action', 'update', 'table', 'orders'," in update
    assert "'pk', JSON_OBJECT('shop', NEW.`shop`, 'number', NEW.`number`)," in update
    assert "'old_pk', JSON_OBJECT('shop', OLD.`shop`, 'number', OLD.`number`)," in update
    assert "'ts', UNIX_TIMESTAMP(SYSDATE(6))" in update
    # And a delete names the old row and sends no old_pk
    assert "'pk', JSON_OBJECT('shop', OLD.`shop`, 'number', OLD.`number`)," in delete
    assert "old_pk" not in delete


def test_every_trigger_logs_the_change_then_rings_once_per_statement_and_second_unless_a_drainer_works() -> None:
    posts = mappings(BUNDLED["tables"]).tables["posts"]

    body = capture_trigger(posts, "insert", 6)

    assert "IF COALESCE(@fanout_disable, 0) <> 1 THEN" in body
    logged = body.index(f"INSERT INTO {CHANGE_LOG_TABLE} (payload) VALUES (JSON_OBJECT(")
    once = body.index("IF NOT (@fanout_statement_at <=> CAST(NOW(6) AS CHAR)) THEN")
    second = body.index("'fanout_ring:', FLOOR(UNIX_TIMESTAMP(SYSDATE(6)) / 1), ':', MD5(DATABASE())")
    handler = body.index("DECLARE CONTINUE HANDLER FOR SQLEXCEPTION")
    mine = body.index("NOT (@fanout_ring_token <=> fanout_token)")
    free = body.index("AND IS_FREE_LOCK(LEFT(CONCAT('fanout_drain:', DATABASE()), 64)) = 1")
    token = body.index("IF GET_LOCK(fanout_token, 0) = 1 THEN")
    ring = body.index("SELECT lambda_async('${parser_function_arn}', JSON_OBJECT(")
    given_back = body.index("IF fanout_ring_failed THEN")
    # The row is logged before the lock is looked at: the drainer's last look relies on that order. The second is
    # read before the drain lock is looked at, and the second's token taken only once the drain lock was free.
    assert logged < once < second < handler < mine < free < token < ring < given_back
    assert body.index("SET fanout_ring_failed = TRUE;") < given_back
    assert "'v', 2, 'ring', 'change_log', 'table', 'posts'," in body
    assert "fanout_fallback_outbox" not in body  # the retired outbox (V009)
    assert drain_lock_name("s" * 80) == ("fanout_drain:" + "s" * 80)[:64]


def test_only_captured_actions_get_triggers_and_tables_are_in_name_order() -> None:
    # Given two tables, declared out of name order, one capturing update and delete only
    generated = capture_migration(mappings({"widgets": KEYWORDS, "orders": ORDERS}), 2)

    # Then
    assert created_triggers(generated) == [
        "fanout_orders_after_update_v002",
        "fanout_orders_after_delete_v002",
        "fanout_widgets_after_insert_v002",
    ]
    assert "--   orders: update, delete (key: shop, number)" in generated


def test_the_same_mapping_gives_the_same_file_whatever_the_order_of_the_json() -> None:
    # Given the same two tables, with tables and capture lists in different orders
    one = mappings({"orders": ORDERS, "widgets": KEYWORDS})
    two = mappings({"widgets": KEYWORDS, "orders": {**ORDERS, "capture": ["update", "delete"]}})

    # Then
    assert capture_migration(one, 4, ["fanout_x_after_insert"]) == capture_migration(two, 4, ["fanout_x_after_insert"])


def test_earlier_triggers_are_dropped_after_the_new_ones_are_created() -> None:
    # Given triggers from earlier migrations, including one for an action no longer captured
    previous = ["fanout_orders_after_insert", "fanout_orders_after_update", "fanout_gone_after_delete"]

    # When
    generated = capture_migration(mappings({"orders": ORDERS}), 7, previous)

    # Then every earlier trigger is dropped, after the last CREATE
    last_create = generated.rindex("CREATE TRIGGER")
    for name in previous:
        assert generated.index(f"DROP TRIGGER IF EXISTS {name};") > last_create
    assert "fanout_orders_after_insert_v007" not in generated


def test_live_triggers_replays_creates_and_drops_in_version_order(tmp_path: Path) -> None:
    # Given V1 creating two triggers and V2 dropping one and creating another (in a DEFINER form)
    (tmp_path / "V1__a.sql").write_text(
        "CREATE TRIGGER fanout_t_after_insert AFTER INSERT ON t FOR EACH ROW BEGIN SET @x = 1; END;\n"
        "CREATE TRIGGER `fanout_t_after_delete` AFTER DELETE ON t FOR EACH ROW BEGIN SET @x = 1; END;\n"
        "CREATE TRIGGER app_own_trigger AFTER DELETE ON t FOR EACH ROW BEGIN SET @x = 1; END;\n"
    )
    (tmp_path / "V2__b.sql").write_text(
        "-- CREATE TRIGGER fanout_in_a_comment is not a statement\n"
        "DROP TRIGGER IF EXISTS fanout_t_after_insert;\n"
        "CREATE DEFINER = CURRENT_USER TRIGGER fanout_u_after_update AFTER UPDATE ON u FOR EACH ROW BEGIN END;\n"
    )

    # When / Then
    assert live_triggers(load_migrations(tmp_path)) == ["fanout_t_after_delete", "fanout_u_after_update"]


def test_the_committed_v006_is_what_the_generator_writes_for_the_bundled_mapping() -> None:
    # Given the bundled mapping and the migrations before V006 (V001-V004 came from the per-row generation)
    earlier = [m for m in load_migrations(MIGRATIONS) if m.version < 6]

    # When
    generated = capture_migration(mappings(BUNDLED_BEFORE_DOCUMENTS), 6, live_triggers(earlier))

    # Then the file on disk is exactly that, with one ring per statement (an applied migration must never change,
    # so neither may this; V010 throttles the ring)
    committed = (MIGRATIONS / "V006__capture_through_change_log.sql").read_text(encoding="utf-8")
    assert ring_per_statement(generated) == committed
    assert dropped_triggers(committed)[-6:] == [
        f"fanout_{table}_after_{action}_v004"
        for table in ("posts", "tenant_settings")
        for action in ("insert", "update", "delete")
    ]


def collation_comparisons(sql: str) -> str:
    """``sql`` with each byte-exact comparison written as V007's generator wrote it: under the collation."""
    return re.sub(r"CAST\((OLD\.`\w+`) AS BINARY\) <=> CAST\((NEW\.`\w+`) AS BINARY\)", r"\1 <=> \2", sql)


def test_the_committed_v007_differs_from_the_generator_only_in_comparing_under_the_collation() -> None:
    # Given the bundled mapping as V007 had it (with the composed articles document) and the migrations before it
    earlier = [m for m in load_migrations(MIGRATIONS) if m.version < 7]

    # When
    generated = capture_migration(mappings(bundled_before_comment_authors()), 7, live_triggers(earlier))

    # Then the applied file is that, but for its changed-values condition (`OLD.c <=> NEW.c`, V008 replaces it)
    committed = (MIGRATIONS / "V007__capture_composed_documents.sql").read_text(encoding="utf-8")
    assert ring_per_statement(generated) != committed
    assert collation_comparisons(ring_per_statement(generated)) == committed
    for table in ("article_tags", "authors", "comments", "tags"):
        for action in ("insert", "update", "delete"):
            assert f"fanout_{table}_feeds_after_{action}_v007" in created_triggers(committed)
    assert "fanout_posts_after_insert_v006" in dropped_triggers(committed)


def test_the_committed_v008_is_what_the_generator_writes_for_the_bundled_mapping_with_documents() -> None:
    # Given the bundled mapping and the migrations before V008
    earlier = [m for m in load_migrations(MIGRATIONS) if m.version < 8]

    # When (with the demo schema's foreign keys, whose cascades V008 captures too)
    bundled = mappings(BUNDLED["tables"])
    generated = capture_migration(bundled, 8, live_triggers(earlier), cascade_triggers(bundled, DEMO_KEYS, 8))

    # Then the file on disk is exactly that, with one ring per statement (V010 throttles it): every V007 trigger
    # replaced, updates of feeding tables compared byte for byte
    committed = (MIGRATIONS / "V008__byte_exact_and_cascade_capture.sql").read_text(encoding="utf-8")
    assert ring_per_statement(generated) == committed
    assert set(dropped_triggers(committed)) >= set(created_triggers(
        (MIGRATIONS / "V007__capture_composed_documents.sql").read_text(encoding="utf-8")))  # fmt: skip
    assert "CAST(OLD.`name` AS BINARY) <=> CAST(NEW.`name` AS BINARY)" in committed
    assert re.search(r"OLD\.`\w+` <=>", committed) is None


def test_the_committed_v010_is_what_the_generator_writes_today_with_the_ring_throttled() -> None:
    # Given the bundled mapping and the migrations before V010
    earlier = [m for m in load_migrations(MIGRATIONS) if m.version < 10]

    # When (with the demo schema's foreign keys)
    bundled = mappings(BUNDLED["tables"])
    generated = capture_migration(bundled, 10, live_triggers(earlier), cascade_triggers(bundled, DEMO_KEYS, 10))

    # Then the file on disk is exactly that: every V008 trigger replaced by one whose ring is throttled
    committed = (MIGRATIONS / "V010__throttled_ring.sql").read_text(encoding="utf-8")
    assert generated == committed
    assert set(dropped_triggers(committed)) >= set(created_triggers(
        (MIGRATIONS / "V008__byte_exact_and_cascade_capture.sql").read_text(encoding="utf-8")))  # fmt: skip
    assert committed.count("IF GET_LOCK(fanout_token, 0) = 1 THEN") == len(created_triggers(committed))
    assert "@fanout_rung_at" not in committed


def test_an_update_of_a_feeding_table_is_skipped_only_when_every_column_read_is_the_same_byte_for_byte() -> None:
    # Given the bundled mapping's triggers on the comments table (a child of articles)
    from fanout.capture.composition_triggers import feeding_triggers

    update = next(sql for table, action, _n, sql, _s in feeding_triggers(mappings(BUNDLED["tables"]), 8)
                  if (table, action) == ("comments", "update"))  # fmt: skip

    # Then its condition compares each column read (fields, join and order columns) as binary, NULL-safe
    condition = update[update.index(" AND NOT (") : update.index(") THEN")]
    compared = re.findall(r"CAST\(OLD\.`(\w+)` AS BINARY\) <=> CAST\(NEW\.`\1` AS BINARY\)", condition)
    assert compared == ["article_id", "author_id", "body", "commenter", "created_at", "id"]
    assert condition.count("<=>") == len(compared)


def test_the_generated_migration_splits_into_its_statements() -> None:
    generated = capture_migration(mappings({"orders": ORDERS, "widgets": KEYWORDS}), 2, ["fanout_old_after_insert"])

    statements = split_statements(generated)

    kinds = [" ".join(s.split()[:2]) for s in statements]
    assert kinds == ["CREATE TABLE"] + ["DROP TRIGGER", "CREATE TRIGGER"] * 3 + ["DROP TRIGGER"]
    assert all(s.rstrip().endswith("END") for s in statements if s.startswith("CREATE TRIGGER"))


def test_write_takes_the_next_version_tolerates_gaps_and_never_overwrites(tmp_path: Path) -> None:
    # Given V001 and V003 (V002 never shipped)
    (tmp_path / "V001__first.sql").write_text("SELECT 1;\n")
    (tmp_path / "V003__third.sql").write_text("SELECT 3;\n")
    posts = mappings(BUNDLED_BEFORE_DOCUMENTS)

    # When
    path = write_capture_migration(tmp_path, posts)

    # Then
    assert path.name == "V004__capture_triggers.sql"
    assert created_triggers(path.read_text())[0] == "fanout_posts_after_insert_v004"
    with pytest.raises(MigrationError, match="version 4 already exists"):
        write_capture_migration(tmp_path, posts, version=4, description="again")
    with pytest.raises(MigrationError, match="below the highest existing version 4"):
        write_capture_migration(tmp_path, posts, version=2)
    with pytest.raises(ValueError, match="description 'bad-name'"):
        write_capture_migration(tmp_path, posts, description="bad-name")


def test_generated_sql_is_sqlfluff_clean_for_keys_of_every_shape(tmp_path: Path) -> None:
    # Given a migration for composite, string and reserved-word keys, written beside the repo's own
    (tmp_path / "V002__generated.sql").write_text(
        capture_migration(
            mappings({"orders": ORDERS, "order": KEYWORDS, "posts": BUNDLED["tables"]["posts"]}),
            2,
            ["fanout_posts_after_insert"],
        )
    )

    # When linted as CI lints db/migrations
    result = sqlfluff_lint(tmp_path)

    # Then
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_triggers_of_tables_feeding_a_document_are_sqlfluff_clean(tmp_path: Path) -> None:
    # Given a document fed by a parent, and one fed by a link table (each file small enough for sqlfluff's 20 kB
    # limit)
    article = dict(BUNDLED["tables"]["articles"])
    fed_by = {
        "parents": {"parents": article["document"]["parents"]},
        "links": {"many_to_many": [dict(article["document"]["many_to_many"][0], table="labels")]},
    }
    for version, document in enumerate(fed_by.values(), start=2):
        documented = {**article, "document": document, "capture": ["delete"]}  # its own triggers: one is enough
        sql = capture_migration(mappings({"articles": documented}), version, [])
        assert len(sql.encode()) < 20_000
        (tmp_path / f"V00{version}__generated.sql").write_text(sql)
    assert "fanout_authors_feeds_after_update_v002" in created_triggers((tmp_path / "V002__generated.sql").read_text())
    assert "fanout_labels_feeds_after_update_v003" in created_triggers((tmp_path / "V003__generated.sql").read_text())

    # When linted as CI lints db/migrations
    result = sqlfluff_lint(tmp_path)

    # Then
    assert result.returncode == 0, result.stdout + result.stderr
