"""Migration files: naming, ordering, checksums, and ${placeholder} rendering (no database)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fanout.capture.migration_scripts import MigrationError, checksum_of, load_migrations, render, split_statements
from fanout.capture.migrations import MigrationRunner

REPO = Path(__file__).resolve().parents[2]
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:fanout-parser-dev"


def write(directory: Path, name: str, text: str = "SELECT 1;\n") -> Path:
    path = directory / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_files_are_loaded_in_numeric_version_order(tmp_path: Path) -> None:
    # Given versions whose text order differs from their numeric order, and a non-SQL file
    write(tmp_path, "V10__add_comments_triggers.sql")
    write(tmp_path, "V2__add_posts_triggers.sql")
    write(tmp_path, "V001__create_tables.sql")
    write(tmp_path, "README.md", "not a migration")

    # When
    migrations = load_migrations(tmp_path)

    # Then
    assert [(m.version, m.description) for m in migrations] == [
        (1, "create tables"),
        (2, "add posts triggers"),
        (10, "add comments triggers"),
    ]
    assert migrations[0].path == tmp_path / "V001__create_tables.sql"
    assert migrations[0].sql == "SELECT 1;\n"


def test_checksum_is_sha256_of_the_bytes_with_crlf_normalised(tmp_path: Path) -> None:
    # Given the same script saved with LF and with CRLF line ends
    (tmp_path / "lf").mkdir()
    (tmp_path / "crlf").mkdir()
    write(tmp_path / "lf", "V1__x.sql", "SELECT 1;\nSELECT 2;\n")
    write(tmp_path / "crlf", "V1__x.sql", "SELECT 1;\r\nSELECT 2;\r\n")

    # When
    [lf] = load_migrations(tmp_path / "lf")
    [crlf] = load_migrations(tmp_path / "crlf")

    # Then
    assert lf.checksum == crlf.checksum == hashlib.sha256(b"SELECT 1;\nSELECT 2;\n").hexdigest()
    assert crlf.sql == lf.sql
    assert checksum_of(b"a\r\nb") == checksum_of(b"a\nb") != checksum_of(b"a\rb")


def test_a_changed_file_has_a_different_checksum(tmp_path: Path) -> None:
    path = write(tmp_path, "V1__x.sql", "SELECT 1;")
    [before] = load_migrations(tmp_path)

    path.write_text("SELECT 2;")
    [after] = load_migrations(tmp_path)

    assert before.checksum != after.checksum


@pytest.mark.parametrize(
    "name",
    ["v1__lower_case_v.sql", "V1_single_underscore.sql", "V__no_version.sql", "V1__.sql", "V1__bad-dash.sql", "x.sql"],
)
def test_a_badly_named_sql_file_is_an_error_naming_it(tmp_path: Path, name: str) -> None:
    # Given one good file and one badly named SQL file
    write(tmp_path, "V1__good.sql")
    write(tmp_path, name)

    # When / Then
    with pytest.raises(MigrationError, match=rf"migration file {name} is badly named"):
        load_migrations(tmp_path)


def test_a_duplicate_version_is_an_error_naming_both_files(tmp_path: Path) -> None:
    write(tmp_path, "V1__first.sql")
    write(tmp_path, "V001__second.sql")

    with pytest.raises(MigrationError, match=r"V001__second.sql and V1__first.sql have the same version 1"):
        load_migrations(tmp_path)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match=r"does not exist"):
        load_migrations(tmp_path / "nowhere")


def test_an_empty_directory_has_no_migrations(tmp_path: Path) -> None:
    assert load_migrations(tmp_path) == []


def test_placeholders_are_substituted_everywhere_they_appear() -> None:
    # Given a placeholder inside a string literal, used twice, next to another one
    sql = "SELECT lambda_async('${parser_function_arn}', '{}') FROM ${schema}.t; -- ${parser_function_arn}"

    # When
    rendered = render(sql, {"parser_function_arn": ARN, "schema": "app_db", "unused": "x"})

    # Then
    assert rendered == f"SELECT lambda_async('{ARN}', '{{}}') FROM app_db.t; -- {ARN}"


def test_a_missing_placeholder_is_an_error_naming_it_and_the_file() -> None:
    with pytest.raises(MigrationError, match=r"V3__x.sql: placeholder \$\{parser_function_arn\} is used"):
        render("SELECT '${parser_function_arn}'", {"schema": "db"}, source="V3__x.sql")


@pytest.mark.parametrize("value", ["it's", "a b", "x;DROP TABLE t", "back\\slash", 'quo"te', "new\nline", "`tick`"])
def test_placeholder_values_outside_the_safe_alphabet_are_refused(value: str) -> None:
    with pytest.raises(MigrationError, match=r"placeholder parser_function_arn has value"):
        render("SELECT '${parser_function_arn}'", {"parser_function_arn": value})


def test_a_malformed_placeholder_is_an_error() -> None:
    with pytest.raises(MigrationError, match=r"malformed placeholder '\$\{not a name\}'"):
        render("SELECT '${not a name}'", {})


def test_text_without_placeholders_is_unchanged() -> None:
    sql = "SELECT '$', '{x}', '$ {y}'"

    assert render(sql, {}) == sql


def test_the_runner_refuses_unsafe_placeholder_values_before_connecting(tmp_path: Path) -> None:
    # Given a connect function that must never be called
    def never_connect() -> object:
        raise AssertionError("connected")

    # When / Then
    with pytest.raises(MigrationError, match=r"placeholder parser_function_arn"):
        MigrationRunner(never_connect, tmp_path, {"parser_function_arn": "x'; DROP"}, applied_by="test")  # type: ignore[arg-type]


def test_the_shipped_migrations_load_render_and_split() -> None:
    # Given the project's own migrations
    migrations = load_migrations(REPO / "db" / "migrations")

    # When
    scripts = [split_statements(render(m.sql, {"parser_function_arn": ARN}, source=m.path.name)) for m in migrations]

    # Then every file yields statements, and no placeholder is left over
    assert migrations
    assert all(scripts)
    assert not any("${" in statement for script in scripts for statement in script)
