"""`fanout check` after each kind of DDL on a captured table, and after the fix docs/runbook.md gives (MySQL 8.0).

Each test starts from the demo schema with the shipped migrations installed (check exits 0), applies one ALTER
TABLE as a DBA would, expects check to exit 1 naming the drift, applies the documented fix (a mapping change,
and a new migration generated from it when the triggers must change) and expects exit 0.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture.cascades import cascade_triggers
from fanout.capture.foreign_keys import read_foreign_keys
from fanout.capture.migrations import MigrationRunner
from fanout.capture.triggers import write_capture_migration
from fanout.config import DatabaseSettings
from fanout.model.mapping import load_mappings
from fanout.operations.maintenance import handle_event
from fanout.source.connection import connect
from fanout_cli.main import main
from tests.support.fakes import FakeOpenSearch
from tests.support.integration import ROOT, execute, install_capture_triggers, parser_arn

BUNDLED = json.loads((ROOT / "layers" / "common" / "fanout" / "tables.json").read_text(encoding="utf-8"))


@pytest.fixture
def installed(db_env: DatabaseSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("FANOUT_MAPPING_FILE", raising=False)
    install_capture_triggers(db_env)
    conn = connect(db_env)
    yield conn
    conn.close()


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = main(["check", *args])
    return status, capsys.readouterr().out.splitlines()


def changed_mapping(tmp_path: Path, change: Any) -> str:
    """The bundled mapping with ``change`` applied to a copy, written to a file; its path."""
    document = copy.deepcopy(BUNDLED)
    change(document["tables"])
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(document))
    return str(path)


def generate_and_deploy(settings: DatabaseSettings, mapping: str, tmp_path: Path) -> None:
    """`fanout migrations generate` from ``mapping`` and the live foreign keys, then the hook's migrate."""
    directory = tmp_path / "migrations"
    shutil.copytree(ROOT / "db" / "migrations", directory)
    mappings = load_mappings(mapping)
    conn = connect(settings)
    keys = read_foreign_keys(conn, settings.name)
    conn.close()
    write_capture_migration(directory, mappings, cascades=lambda version: cascade_triggers(mappings, keys, version))
    placeholders = {"parser_function_arn": parser_arn(settings.name)}
    MigrationRunner(lambda: connect(settings), directory, placeholders, applied_by="test").migrate()


def test_the_installed_demo_has_no_drift(installed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = check(capsys)
    assert (status, len(out)) == (0, 1) and out[0].startswith("no drift")


def test_add_column_even_instant_is_no_risk(installed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # When a column is added in place (INSTANT: no table rebuild)
    execute(installed, "ALTER TABLE posts ADD COLUMN subtitle VARCHAR(50) NULL, ALGORITHM=INSTANT")

    # Then writes are still captured and nothing drifts (the mapping lists the columns it replicates)
    execute(installed, "INSERT INTO posts (title, body, author, subtitle) VALUES ('t', 'b', 'a', 's')")
    assert check(capsys)[0] == 0


def test_dropping_a_mapped_column_is_named_until_the_mapping_drops_it(
    installed: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    execute(installed, "ALTER TABLE posts DROP COLUMN author")

    status, out = check(capsys)
    assert status == 1
    assert out == [
        "posts.author: column does not exist (a mapped column): every fetch of posts fails; fix: restore it, or"
        " change the mapping and run `fanout migrations generate` and deploy the new migration"
    ]

    def without_author(tables: dict[str, Any]) -> None:
        tables["posts"]["columns"].remove("author")

    assert check(capsys, "--mapping", changed_mapping(tmp_path, without_author))[0] == 0


def test_renaming_a_column_a_trigger_reads_fails_writes_and_is_named_until_a_new_migration(
    installed: Any, db_env: DatabaseSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given an author (before the DDL, --risks names the column as one whose rename fails writes)
    author = execute(installed, "INSERT INTO authors (name) VALUES ('Ann')")
    [authors_risk] = [line for line in check(capsys, "--risks")[1] if line.startswith("authors:")]
    assert "renaming or dropping id, name fails every write" in authors_risk

    # When the column a document reads is renamed
    execute(installed, "ALTER TABLE authors RENAME COLUMN name TO full_name")

    # Then an update of an author fails in our trigger, and check names it (and the fetch that would fail)
    with pytest.raises(pymysql.err.OperationalError, match="Unknown column 'name' in 'OLD'"):
        execute(installed, "UPDATE authors SET full_name = 'Ann B' WHERE id = %s", author)
    status, out = check(capsys)
    assert status == 1
    assert "authors.name: column does not exist (read for articles.author): every fetch of authors fails" in out[0]
    assert any(
        line.startswith("fanout_authors_feeds_after_update_v010: reads authors.name, which no longer exist:")
        for line in out
    )

    # When the documented fix is applied: the mapping reads the new name, a new migration replaces the triggers
    def full_name(tables: dict[str, Any]) -> None:
        tables["articles"]["document"]["parents"][0]["fields"] = ["id", "full_name"]

    mapping = changed_mapping(tmp_path, full_name)
    generate_and_deploy(db_env, mapping, tmp_path)

    # Then writes work and check is clean
    execute(installed, "UPDATE authors SET full_name = 'Ann B' WHERE id = %s", author)
    assert check(capsys, "--mapping", mapping)[0] == 0


def test_renaming_a_key_column_is_named_before_and_after_and_the_locked_swap_fixes_it(
    installed: Any, db_env: DatabaseSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given (before the DDL) check names the key as a write risk
    [posts_risk] = [line for line in check(capsys, "--risks")[1] if line.startswith("posts:")]
    assert posts_risk.startswith("posts: renaming or dropping id fails every write")

    # When the key column is renamed
    execute(installed, "ALTER TABLE posts RENAME COLUMN id TO post_id")

    # Then every write fails in our trigger, and check names the key, the trigger and the mapping
    with pytest.raises(pymysql.err.OperationalError, match="Unknown column 'id' in 'NEW'"):
        execute(installed, "INSERT INTO posts (title, body, author) VALUES ('t', 'b', 'a')")
    status, out = check(capsys)
    assert status == 1
    assert "posts.id: column does not exist (a key column): every fetch of posts fails" in out[0]
    assert "posts: primary key is (post_id) but the mapping's is (id)" in "\n".join(out)
    assert any(line.startswith("fanout_posts_after_insert_v010: reads posts.id, which no longer exist") for line in out)

    # When the mapping's key follows and the new migration is deployed
    def post_id(tables: dict[str, Any]) -> None:
        posts = tables["posts"]
        posts["primary_key"] = [{"column": "post_id", "type": "int"}]
        posts["columns"] = ["post_id" if c == "id" else c for c in posts["columns"]]

    mapping = changed_mapping(tmp_path, post_id)
    generate_and_deploy(db_env, mapping, tmp_path)

    # Then writes work and check is clean
    execute(installed, "INSERT INTO posts (title, body, author) VALUES ('t', 'b', 'a')")
    assert check(capsys, "--mapping", mapping)[0] == 0


def test_changing_a_key_columns_type_is_named_until_the_mapping_types_it(
    installed: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    execute(installed, "ALTER TABLE posts MODIFY COLUMN id VARCHAR(40) NOT NULL")

    status, out = check(capsys)
    assert (status, out) == (
        1,
        ["posts.id: key column is varchar but the mapping types it int; fix: set its type in the mapping's"
         " primary_key and deploy"],
    )  # fmt: skip

    def string_key(tables: dict[str, Any]) -> None:
        tables["posts"]["primary_key"] = [{"column": "id", "type": "string"}]

    assert check(capsys, "--mapping", changed_mapping(tmp_path, string_key))[0] == 0


def test_a_new_cascading_foreign_key_is_named_until_a_new_migration_covers_it(
    installed: Any, db_env: DatabaseSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # When a foreign key now deletes posts with their writer
    execute(installed, "CREATE TABLE writers (name VARCHAR(100) NOT NULL PRIMARY KEY) COLLATE utf8mb4_unicode_ci")
    execute(
        installed,
        "ALTER TABLE posts ADD CONSTRAINT posts_writer FOREIGN KEY (author) REFERENCES writers (name)"
        " ON DELETE CASCADE",
    )

    # Then check names the key and the trigger that would capture it
    status, out = check(capsys)
    assert status == 1
    assert out == [
        "fanout_writers_cascade_before_delete_v010: missing: foreign keys posts_writer (posts(author) ->"
        " writers(name) ON DELETE CASCADE ON UPDATE NO ACTION) change captured rows, for which the engine fires"
        " no trigger; fix: run `fanout migrations generate` and deploy the new migration"
    ]

    # When a new migration is generated and deployed
    generate_and_deploy(db_env, str(ROOT / "layers" / "common" / "fanout" / "tables.json"), tmp_path)

    # Then it is covered
    assert check(capsys)[0] == 0


def test_the_maintenance_function_runs_the_check_on_its_schedule(installed: Any) -> None:
    class Dependencies:  # what the check needs of fanout.operations.maintenance.Maintenance
        mappings = load_mappings(None)
        opensearch = FakeOpenSearch()  # no index yet: nothing to compare (tests/integration/test_reindex.py does)

        def conn(self) -> Any:
            return installed

    def run() -> dict[str, Any]:
        return handle_event({"action": "check"}, Dependencies, lambda payload: None, lambda: True)

    assert run() == {"drifts": []}
    execute(installed, "ALTER TABLE posts DROP COLUMN author")
    assert [line.split(":")[0] for line in run()["drifts"]] == ["posts.author"]
