"""`fanout migrations generate`, `fanout sweep` and `fanout aurora-setup` from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fanout.source.connection import connect
from fanout_cli.main import main
from tests.support.files import ROOT
from tests.support.integration import lambda_async_bridge, parser_arn

PARSER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:fanout-cli-test-parser"
ROLE = "arn:aws:iam::123456789012:role/fanout-AuroraInvokeRole-ABC"


@pytest.fixture
def db_env(db_env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared fixture (tests/conftest.py), with no queue or mapping override from the caller's shell."""
    for key in ("DEAD_LETTER_QUEUE_URL", "FANOUT_MAPPING_FILE"):
        monkeypatch.delenv(key, raising=False)
    return db_env


def test_generate_writes_the_next_migration_and_migrate_applies_it(
    db_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a copy of the shipped migrations
    directory = tmp_path / "migrations"
    shutil.copytree(ROOT / "db" / "migrations", directory)
    before = sorted(p.name for p in directory.iterdir())

    # When a preview is asked for, nothing is written
    assert main(["migrations", "generate", "--dir", str(directory), "--stdout"]) == 0
    preview = capsys.readouterr().out
    assert sorted(p.name for p in directory.iterdir()) == before

    # When it is generated
    assert main(["migrations", "generate", "--dir", str(directory), "--name", "posts_again"]) == 0

    # Then the file is the preview, with the next version, and the runner applies it after the others
    [new] = sorted(set(p.name for p in directory.iterdir()) - set(before))
    assert capsys.readouterr().out == f"wrote {directory / new}\n"
    assert new.endswith("__posts_again.sql") and (directory / new).read_text() == preview
    assert main(["migrate", "--dir", str(directory), "--parser-arn", PARSER_ARN]) == 0
    assert f"V{new[1:4]}" in capsys.readouterr().out


def test_generate_names_a_bad_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = tmp_path / "tables.json"
    mapping.write_text(json.dumps({"tables": {"posts": {"primary_key": [{"column": "id"}], "capture": ["upsert"]}}}))

    assert main(["migrations", "generate", "--dir", str(tmp_path), "--mapping", str(mapping)]) == 1

    # one line naming the table, the field down to the list item, and the value at fault
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "table mapping for 'posts', field 'capture[0]': 'upsert'" in err
    assert list(tmp_path.glob("V*.sql")) == []


def test_sweep_status_shows_the_changes_waiting_in_the_change_log(
    db_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the shipped migrations and two changes written while lambda_async failed (Lambda unreachable)
    arn = parser_arn(db_env.name)
    assert main(["migrate", "--dir", str(ROOT / "db" / "migrations"), "--parser-arn", arn]) == 0
    lambda_async_bridge().configure(arn, fail="Network Connection. Unable to connect to endpoint (test)")
    conn = connect(db_env)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO posts (title, body, author) VALUES ('a', 'b', 'c'), ('d', 'e', 'f')")
    finally:
        conn.close()
        lambda_async_bridge().reset(arn)
    capsys.readouterr()

    # When / Then both wait in the log (a failed ring leaves the change there), for the sweeper's ring
    assert main(["sweep", "--status"]) == 0
    assert capsys.readouterr().out.startswith("change log: 2 row(s) waiting, oldest ")
    assert main(["sweep", "--status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["change_log"]["depth"] == 2


def test_sweep_without_the_parser_to_ring_is_a_clear_error(
    db_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARSER_FUNCTION_NAME", raising=False)
    assert main(["sweep"]) == 2
    assert "PARSER_FUNCTION_NAME" in capsys.readouterr().err


def test_aurora_setup_prints_the_grants_and_the_role_association(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aurora-setup", "--db-user", "fanout", "--cluster", "orders", "--role-arn", ROLE]) == 0
    script = capsys.readouterr().out
    assert "GRANT AWS_LAMBDA_ACCESS TO 'fanout'@'%';" in script
    assert f"--feature-name Lambda --role-arn {ROLE}" in script

    assert main(["aurora-setup", "--db-user", "x'y", "--cluster", "orders", "--role-arn", ROLE]) == 1
    assert 'database user "x\'y" is not valid' in capsys.readouterr().err
