"""split_statements: a script split on ';' the way the server would see it, no DELIMITER."""

from __future__ import annotations

import pytest

from fanout.capture.migration_scripts import MigrationError, split_statements


def test_plain_statements_are_split_on_semicolons_and_trimmed() -> None:
    # Given two statements, the last one without a trailing semicolon
    sql = "CREATE TABLE a (x INT);\n\n  INSERT INTO a VALUES (1)  \n"

    # When / Then
    assert split_statements(sql) == ["CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1)"]


def test_empty_and_comment_only_statements_are_dropped() -> None:
    # Given stray semicolons and a statement made only of comments
    sql = ";;\n-- only a comment;\n/* block ; comment */ ;\n# hash comment\nSELECT 1;;"

    # When / Then
    assert split_statements(sql) == ["SELECT 1"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
        ('SELECT "a;b"; SELECT 2', ['SELECT "a;b"', "SELECT 2"]),
        ("SELECT `we;ird` FROM t; SELECT 2", ["SELECT `we;ird` FROM t", "SELECT 2"]),
        ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
        ("SELECT 'it\\'s; fine'; SELECT 2", ["SELECT 'it\\'s; fine'", "SELECT 2"]),
        ('SELECT "say \\"hi;\\""; SELECT 2', ['SELECT "say \\"hi;\\""', "SELECT 2"]),
        ("SELECT 'ends in backslash\\\\'; SELECT 2", ["SELECT 'ends in backslash\\\\'", "SELECT 2"]),
        ("SELECT `a``;b`; SELECT 2", ["SELECT `a``;b`", "SELECT 2"]),
        ("SELECT `a\\`; SELECT 2", ["SELECT `a\\`", "SELECT 2"]),  # no backslash escapes in backticks
    ],
    ids=[
        "single",
        "double",
        "backtick",
        "doubled-single",
        "backslash-single",
        "backslash-double",
        "escaped-backslash",
        "doubled-backtick",
        "backslash-in-backtick",
    ],
)
def test_semicolons_inside_quotes_do_not_split(sql: str, expected: list[str]) -> None:
    # When / Then
    assert split_statements(sql) == expected


def test_semicolons_inside_comments_do_not_split_and_inner_comments_are_kept() -> None:
    # Given comments of every kind, some holding semicolons and quotes
    sql = (
        "-- leading; comment with 'quote\n"
        "SELECT 1, -- trailing; comment\n"
        "  2 # hash; comment 'x\n"
        "  /* block; 'comment */ , 3 -- after the last token; dropped\n"
        ";\n"
        "SELECT 4"
    )

    # When
    statements = split_statements(sql)

    # Then the comments around a statement go, the ones inside it stay
    assert statements == [
        "SELECT 1, -- trailing; comment\n  2 # hash; comment 'x\n  /* block; 'comment */ , 3",
        "SELECT 4",
    ]


def test_double_dash_without_a_space_is_not_a_comment() -> None:
    # Given "--" used as two minus signs (MySQL needs whitespace after a comment's "--")
    sql = "SELECT 5--1; SELECT 2 --\n; SELECT 3"

    # When / Then
    assert split_statements(sql) == ["SELECT 5--1", "SELECT 2", "SELECT 3"]


def test_executable_comment_is_a_statement_not_a_comment() -> None:
    # Given a version-gated comment the server executes
    sql = "/*!40101 SET NAMES utf8mb4 */; SELECT 1"

    # When / Then
    assert split_statements(sql) == ["/*!40101 SET NAMES utf8mb4 */", "SELECT 1"]


TRIGGER = """\
CREATE TRIGGER fanout_items_after_update AFTER UPDATE ON items FOR EACH ROW
BEGIN
    -- a comment; with a semicolon and an END
    DECLARE note VARCHAR(20) DEFAULT 'end;'; /* END; */
    IF NOT (OLD.name <=> NEW.name) THEN
        SET @kind = CASE WHEN NEW.id > 0 THEN 'positive; END' ELSE "other;" END;
        SELECT lambda_async('arn', JSON_OBJECT('pk', JSON_OBJECT('id', NEW.id))) INTO @r;
    ELSEIF NEW.id = 0 THEN
        SET @kind = 'zero';
    END IF;
END"""


def test_trigger_body_with_semicolons_in_code_strings_and_comments_stays_whole() -> None:
    # Given a trigger between two plain statements
    sql = f"DROP TRIGGER IF EXISTS fanout_items_after_update;\n\n{TRIGGER};\n\nSELECT 1;"

    # When
    statements = split_statements(sql)

    # Then
    assert statements == ["DROP TRIGGER IF EXISTS fanout_items_after_update", TRIGGER, "SELECT 1"]


def test_nested_begin_end_blocks_and_labels() -> None:
    # Given a procedure with a labelled inner block
    body = (
        "CREATE PROCEDURE p()\n"
        "outer_block: BEGIN\n"
        "  DECLARE i INT DEFAULT 0;\n"
        "  inner_block: BEGIN\n"
        "    SET i = i + 1;\n"
        "  END inner_block;\n"
        "  SELECT i;\n"
        "END outer_block"
    )

    # When / Then
    assert split_statements(body + ";\nCALL p();") == [body, "CALL p()"]


@pytest.mark.parametrize(
    "loop",
    [
        "lbl: LOOP SET i = i + 1; IF i > 3 THEN LEAVE lbl; END IF; END LOOP lbl;",
        "WHILE i < 3 DO SET i = i + 1; END WHILE;",
        "REPEAT SET i = i + 1; UNTIL i > 3 END REPEAT;",
        "CASE i WHEN 1 THEN SET i = 2; ELSE SET i = 3; END CASE;",
    ],
    ids=["loop", "while", "repeat", "case-statement"],
)
def test_blocks_ending_in_end_keyword_pairs_stay_inside_the_body(loop: str) -> None:
    # Given a body holding a loop or CASE statement that ends with END LOOP/WHILE/REPEAT/CASE
    body = f"CREATE PROCEDURE p()\nBEGIN\n  DECLARE i INT DEFAULT 0;\n  {loop}\n  SELECT i;\nEND"

    # When / Then
    assert split_statements(f"{body};\nSELECT 2") == [body, "SELECT 2"]


def test_case_expression_outside_a_body_closes_with_end() -> None:
    # Given a CASE expression in a plain statement
    sql = "SELECT CASE WHEN 1 THEN 'a' ELSE 'b' END AS x; SELECT CASE 1 WHEN 1 THEN 2 END"

    # When / Then
    assert split_statements(sql) == [
        "SELECT CASE WHEN 1 THEN 'a' ELSE 'b' END AS x",
        "SELECT CASE 1 WHEN 1 THEN 2 END",
    ]


def test_if_function_and_if_exists_do_not_open_blocks() -> None:
    # Given IF used as a function and as a DDL clause
    sql = "SELECT IF(1, 'a', 'b'); DROP TABLE IF EXISTS t; SELECT REPEAT('x', 2)"

    # When / Then
    assert split_statements(sql) == ["SELECT IF(1, 'a', 'b')", "DROP TABLE IF EXISTS t", "SELECT REPEAT('x', 2)"]


@pytest.mark.parametrize("begin", ["BEGIN", "begin", "BEGIN WORK"])
def test_begin_as_a_transaction_start_is_a_statement_of_its_own(begin: str) -> None:
    # Given a transaction written with BEGIN outside any compound body
    sql = f"{begin}; INSERT INTO t VALUES (1); COMMIT"

    # When / Then
    assert split_statements(sql) == [begin, "INSERT INTO t VALUES (1)", "COMMIT"]


def test_keywords_are_case_insensitive_and_need_word_boundaries() -> None:
    # Given lower-case keywords and identifiers that merely contain them
    body = "create trigger t before insert on x for each row begin set new.ended = 1; set new.cased = 2; end"

    # When / Then
    assert split_statements(body + "; select 1") == [body, "select 1"]


def test_unterminated_string_is_an_error_naming_the_line() -> None:
    with pytest.raises(MigrationError, match=r"unterminated ' quote starting on line 2"):
        split_statements("SELECT 1;\nSELECT 'oops;\nSELECT 2;")


def test_unterminated_block_comment_is_an_error() -> None:
    with pytest.raises(MigrationError, match=r"unterminated /\* comment"):
        split_statements("SELECT 1; /* never closed; SELECT 2;")


def test_begin_without_end_is_an_error_naming_the_statement_line() -> None:
    # Given a trigger whose END was forgotten
    sql = "SELECT 1;\nCREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW\nBEGIN\n  SET @a = 1;\n"

    # When / Then
    with pytest.raises(MigrationError, match=r"line 2 has a BEGIN or CASE without a matching END"):
        split_statements(sql)


def test_delimiter_is_refused_with_an_explanation() -> None:
    sql = "DELIMITER $$\nCREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW BEGIN SET @a = 1; END$$\nDELIMITER ;"

    with pytest.raises(MigrationError, match=r"DELIMITER on line 1 is a mysql client command"):
        split_statements(sql)


def test_crlf_line_ends_are_handled() -> None:
    sql = "-- comment\r\nSELECT 1;\r\nSELECT 'a;b';\r\n"

    assert split_statements(sql) == ["SELECT 1", "SELECT 'a;b'"]
