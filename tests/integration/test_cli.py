"""`fanout migrate` against MySQL 8.0: the command line runs the same runner as the post-deploy hook."""

from __future__ import annotations

from typing import Any

import pytest

from fanout_cli.main import main
from tests.support.files import ROOT

PARSER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:fanout-test-parser"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "migrate" in capsys.readouterr().out


def test_a_usage_error_exits_2_with_the_reason_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "Missing command" in capsys.readouterr().err
    assert main(["migrate", "--status", "--dry-run"]) == 2
    assert "--status is not allowed with --dry-run" in capsys.readouterr().err
    assert main(["status", "--since", "soon"]) == 2
    assert "not a duration: 'soon'" in capsys.readouterr().err


def test_migrate_status_dry_run_and_apply(db_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    migrations = str(ROOT / "db" / "migrations")

    assert main(["migrate", "--dir", migrations, "--status"]) == 0
    assert "V001  pending" in capsys.readouterr().out

    assert main(["migrate", "--dir", migrations, "--dry-run", "--parser-arn", PARSER_ARN]) == 0
    dry = capsys.readouterr().out
    assert "CREATE TRIGGER fanout_posts_after_insert" in dry and PARSER_ARN in dry

    assert main(["migrate", "--dir", migrations, "--parser-arn", PARSER_ARN]) == 0
    assert "applied V001" in capsys.readouterr().out
    assert main(["migrate", "--dir", migrations, "--status"]) == 0
    assert "V001  applied" in capsys.readouterr().out


def test_migrate_without_a_parser_arn_is_a_clear_error(db_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--dir", str(ROOT / "db" / "migrations")]) == 2
    assert "parser function ARN" in capsys.readouterr().err


def test_missing_database_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("DB_HOST", "DB_SECRET_ARN", "DB_USER"):
        monkeypatch.delenv(key, raising=False)
    assert main(["migrate", "--status"]) == 2
    assert "DB_" in capsys.readouterr().err
