"""Byte-exact change detection of the triggers on tables feeding composed documents, on MySQL 8.0.

A feeding table's update trigger skips an update that changes no column a document reads
(fanout.capture.changed_values). "Changes" is byte for byte: an edit a collation calls equal (case,
accents, trailing spaces under PAD SPACE) still reaches the sinks. Each case below is a column of one
collation kind or type family, fed into a document as a parent's field; its triggers are generated from
that mapping and applied as the post-deploy hook applies a migration. An update that rewrites the same
bytes (and changes a column no document reads) logs nothing; the edit logs one row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture.migrations import MigrationRunner
from fanout.capture.names import CHANGE_LOG_TABLE
from fanout.capture.triggers import write_capture_migration
from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings, parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.opensearch import OpenSearchSink, make_client
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.aws import dynamodb_sink
from tests.support.fakes import RecordingQueue
from tests.support.indices import delete_index
from tests.support.integration import execute, install_capture_triggers, lambda_async_bridge, parser_arn, rows
from tests.support.mappings import in_index

# One column per collation kind and type family; `untouched` is read by no document.
KINDS_TABLE = """
CREATE TABLE kinds (
    id BIGINT NOT NULL PRIMARY KEY,
    untouched INT NOT NULL DEFAULT 0,
    unicode_ci VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    ai_ci_no_pad VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci NULL,
    as_cs_no_pad VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_as_cs NULL,
    bin_pad VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    bin_no_pad VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin NULL,
    latin1_ci VARCHAR(50) CHARACTER SET latin1 COLLATE latin1_swedish_ci NULL,
    fixed_char CHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    long_text TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    a_json JSON NULL,
    an_int BIGINT NULL,
    a_decimal DECIMAL(10, 2) NULL,
    a_double DOUBLE NULL,
    a_datetime DATETIME(6) NULL,
    a_timestamp TIMESTAMP(6) NULL,
    a_date DATE NULL,
    a_time TIME(6) NULL,
    a_year YEAR NULL,
    an_enum ENUM('draft', 'published') NULL,
    a_set SET('red', 'green', 'blue') NULL,
    a_blob BLOB NULL,
    a_varbinary VARBINARY(20) NULL,
    a_bit BIT(8) NULL
) ENGINE = InnoDB
"""
HOLDERS_TABLE = """
CREATE TABLE holders (
    id BIGINT NOT NULL PRIMARY KEY,
    kind_id BIGINT NULL,
    KEY holders_kind (kind_id)
) ENGINE = InnoDB
"""
READ = [
    "unicode_ci", "ai_ci_no_pad", "as_cs_no_pad", "bin_pad", "bin_no_pad",
    "latin1_ci", "fixed_char", "long_text", "a_json",
    "an_int", "a_decimal", "a_double", "a_datetime", "a_timestamp", "a_date", "a_time", "a_year", "an_enum", "a_set",
    "a_blob", "a_varbinary", "a_bit",
]  # fmt: skip
MAPPING = {
    "tables": {
        "holders": {
            "primary_key": [{"column": "id", "type": "int"}],
            "columns": ["id", "kind_id"],
            "document": {"parents": [{"name": "kind", "table": "kinds", "on": {"kind_id": "id"}, "fields": READ}]},
        }
    }
}

# (column, value before, value after): SQL literals. Each edit is one a sink sees.
EDITS = [
    # collation kinds
    pytest.param("unicode_ci", "'Renamed x'", "'RENAMED x'", id="case-insensitive: case only"),
    pytest.param("unicode_ci", "'e'", "'é'", id="accent-insensitive (unicode_ci): accent only"),
    pytest.param("unicode_ci", "'hello'", "'hello  '", id="pad space: trailing spaces"),
    pytest.param("ai_ci_no_pad", "'resume'", "'résumé'", id="accent-insensitive no pad (0900_ai_ci): accents"),
    pytest.param("ai_ci_no_pad", "'Beta'", "'BETA'", id="case-insensitive no pad (0900_ai_ci): case"),
    pytest.param("ai_ci_no_pad", "'hello'", "'hello '", id="no pad (0900_ai_ci): trailing space"),
    pytest.param("as_cs_no_pad", "'beta'", "'BETA'", id="case- and accent-sensitive (0900_as_cs): case"),
    pytest.param("bin_pad", "'x'", "'x '", id="binary collation, pad space (utf8mb4_bin): trailing space"),
    pytest.param("bin_no_pad", "'x'", "'x '", id="binary collation, no pad (utf8mb4_0900_bin): trailing space"),
    pytest.param("latin1_ci", "'beta'", "'BETA'", id="single-byte charset (latin1_swedish_ci): case"),
    pytest.param("fixed_char", "'abc'", "'ABC'", id="CHAR: case"),
    pytest.param("long_text", "'hello'", "'hello  '", id="TEXT: trailing spaces"),
    # type families
    pytest.param("a_json", """'{"a": "x"}'""", """'{"a": "X"}'""", id="JSON: a string's case"),
    pytest.param("a_json", """'{"a": 1}'""", """'{"a": 1.0}'""", id="JSON: 1 becomes 1.0"),
    pytest.param("an_int", "7", "8", id="integer"),
    pytest.param("a_decimal", "1.50", "1.51", id="DECIMAL"),
    pytest.param("a_double", "0.0e0", "-0.0e0", id="DOUBLE: 0 becomes -0"),
    pytest.param("a_double", "0.3e0", "0.1e0 + 0.2e0", id="DOUBLE: the last digit"),
    pytest.param("a_datetime", "'2026-01-01 00:00:00.000001'", "'2026-01-01 00:00:00.000002'", id="DATETIME(6)"),
    pytest.param("a_timestamp", "'2026-01-01 00:00:00.000001'", "'2026-01-01 00:00:00.000002'", id="TIMESTAMP(6)"),
    pytest.param("a_date", "'2026-01-01'", "'2026-01-02'", id="DATE"),
    pytest.param("a_time", "'10:00:00'", "'10:00:00.5'", id="TIME(6)"),
    pytest.param("a_year", "2025", "2026", id="YEAR"),
    pytest.param("an_enum", "'draft'", "'published'", id="ENUM"),
    pytest.param("a_set", "'red'", "'red,blue'", id="SET"),
    pytest.param("a_blob", "x'61'", "x'6120'", id="BLOB: a trailing space byte"),
    pytest.param("a_varbinary", "x'00'", "x'0000'", id="VARBINARY: a trailing zero byte"),
    pytest.param("a_bit", "b'00000001'", "b'00000011'", id="BIT"),
    # NULL is a value of its own
    pytest.param("unicode_ci", "NULL", "''", id="NULL becomes the empty string"),
    pytest.param("unicode_ci", "''", "NULL", id="the empty string becomes NULL"),
    pytest.param("an_int", "0", "NULL", id="0 becomes NULL"),
]


@pytest.fixture
def kinds(db_settings: DatabaseSettings, tmp_path: Path) -> Iterator[pymysql.connections.Connection]:
    """The ``kinds`` table, fed into ``holders`` documents, with the triggers generated for that mapping."""
    conn = connect(db_settings)
    execute(conn, KINDS_TABLE)
    execute(conn, HOLDERS_TABLE)
    write_capture_migration(tmp_path, parse_mappings(MAPPING), version=1)
    arn = parser_arn(db_settings.name)
    lambda_async_bridge().configure(arn, deliver=False)
    MigrationRunner(lambda: connect(db_settings), tmp_path, {"parser_function_arn": arn}, applied_by="test").migrate()
    yield conn
    conn.close()


def logged(conn: pymysql.connections.Connection) -> list[dict[str, Any]]:
    return [json.loads(p) for (p,) in rows(conn, f"SELECT payload FROM {CHANGE_LOG_TABLE} ORDER BY id")]


@pytest.mark.parametrize(("column", "before", "after"), EDITS)
def test_an_edit_a_collation_calls_equal_is_captured_and_rewriting_the_same_bytes_is_not(
    kinds: pymysql.connections.Connection, column: str, before: str, after: str
) -> None:
    # Given a kinds row holding `before`, the change log empty
    execute(kinds, f"INSERT INTO kinds (id, {column}) VALUES (1, {before})")  # noqa: S608 - test literals
    execute(kinds, f"DELETE FROM {CHANGE_LOG_TABLE}")  # noqa: S608

    # When the same value is written again beside a column no document reads, nothing is logged
    execute(kinds, f"UPDATE kinds SET {column} = {before}, untouched = untouched + 1 WHERE id = 1")  # noqa: S608
    assert logged(kinds) == []

    # When the edit is written, one change names the row, via the relation it feeds
    execute(kinds, f"UPDATE kinds SET {column} = {after} WHERE id = 1")  # noqa: S608
    (payload,) = logged(kinds)
    assert payload["action"] == "update" and payload["table"] == "kinds"
    assert payload["refs"] == [{"root": "holders", "via": "kind", "new": {"id": 1}, "old": {"id": 1}}]


def test_a_timestamp_rewritten_in_another_session_zone_is_the_same_instant(
    kinds: pymysql.connections.Connection,
) -> None:
    # Given a TIMESTAMP written in UTC
    execute(kinds, "INSERT INTO kinds (id, a_timestamp) VALUES (1, '2026-01-01 12:00:00')")
    execute(kinds, f"DELETE FROM {CHANGE_LOG_TABLE}")  # noqa: S608

    # When a session in another zone writes the same instant in its own words, nothing is logged
    execute(kinds, "SET time_zone = '+02:00'")
    execute(kinds, "UPDATE kinds SET a_timestamp = '2026-01-01 14:00:00', untouched = 1 WHERE id = 1")
    assert logged(kinds) == []
    # and another instant is
    execute(kinds, "UPDATE kinds SET a_timestamp = '2026-01-01 12:00:00' WHERE id = 1")
    assert len(logged(kinds)) == 1


# --------------------------------------------------------------------------- a case-only rename, end to end


@pytest.fixture
def articles(db_settings: DatabaseSettings, opensearch_endpoint: str, replica_table: Any) -> Iterator[dict[str, Any]]:
    """The demo schema with the shipped migrations, and the fetch path writing a fresh index and the replica."""
    install_capture_triggers(db_settings)
    mapping = in_index(default_mappings().tables["articles"], f"articles-{uuid.uuid4().hex[:8]}")
    mappings = Mappings({**default_mappings().tables, "articles": mapping})
    client = make_client(opensearch_endpoint)
    writer, reader = connect(db_settings), connect(db_settings)
    sinks = [OpenSearchSink(client), dynamodb_sink(replica_table, tombstone_ttl_seconds=60)]

    def fetch(changes: list[Change]) -> None:
        """Fetcher invocations as the queue delivers them: each change, then every continuation it hands on."""
        pending = list(changes)
        while pending:
            handed_on = RecordingQueue()
            fetcher = Fetcher(mappings, DatabaseSource.over(reader), sinks, continuations=handed_on, pages=1,
                              page_size=2)  # fmt: skip
            fetcher.apply([pending.pop(0)])
            pending += [change for batch in handed_on.batches for change in batch]

    def drain() -> None:
        """What the parser makes of the change log (its rows taken and parsed), fetched."""
        payloads = logged(writer)
        execute(writer, f"DELETE FROM {CHANGE_LOG_TABLE}")  # noqa: S608
        fetch([change for payload in payloads for change in parse_trigger_payload(payload, mappings)])

    def documents(ids: list[int]) -> list[dict[str, Any] | None]:
        client.indices.refresh(index=mapping.opensearch.index)
        found = [client.get(index=mapping.opensearch.index, id=str(i), ignore=404) for i in ids]
        return [f["_source"] if f.get("found") else None for f in found]

    def items(ids: list[int]) -> list[dict[str, Any]]:
        return [replica_table.get_item(Key={"pk": f"articles#{i}"}, ConsistentRead=True)["Item"] for i in ids]

    yield {"conn": writer, "drain": drain, "documents": documents, "items": items}
    delete_index(client, mapping.opensearch.index)
    writer.close()
    reader.close()


def test_a_case_only_rename_of_an_author_reaches_every_article_in_both_sinks(articles: dict[str, Any]) -> None:
    # Given an author of five published articles, replicated
    conn = articles["conn"]
    author = execute(conn, "INSERT INTO authors (name) VALUES ('Renamed x')")
    ids = [execute(conn, "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', 'published', %s)",
                   f"a{i}", author) for i in range(5)]  # fmt: skip
    articles["drain"]()
    assert [d["author"]["name"] for d in articles["documents"](ids)] == ["Renamed x"] * 5

    # When only the case of the name changes, and the log is drained through the fetch path
    execute(conn, "UPDATE authors SET name = 'RENAMED x' WHERE id = %s", author)
    assert len(logged(conn)) == 1
    articles["drain"]()

    # Then every article holds the new name in OpenSearch and DynamoDB
    assert [d["author"]["name"] for d in articles["documents"](ids)] == ["RENAMED x"] * 5
    assert [i["author"]["name"] for i in articles["items"](ids)] == ["RENAMED x"] * 5
