"""Key values are data, never SQL: injection strings as string keys against a real MySQL 8.0.

The payload's key values reach the database only as parameters of the statement
built from the validated mapping (source_reader.select_row_sql); pymysql escapes
them for the session (also under NO_BACKSLASH_ESCAPES, where a backslash escapes
nothing). So each read returns exactly the row with that key, or none, and no
statement does anything else. tests/unit/test_hostile_input.py shows, with a
recording connection, that only the mapping's statements are ever sent.
"""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

from fanout.model.mapping import parse_mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.source.reader import read_row

MAPPINGS = parse_mappings(
    {
        "tables": {
            "tags": {"primary_key": [{"column": "name", "type": "string"}]},
            "comments": {"primary_key": [{"column": "tenant", "type": "string"}, {"column": "id", "type": "int"}]},
        }
    }
)
INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 -- ",
    "x'; DROP TABLE tags; -- ",
    "\\' OR 1=1 -- ",  # a backslash before the quote: the NO_BACKSLASH_ESCAPES trap
    "\\",
    "'' OR ''='",
    "name` = `name",
    "%",
    "_",
    "\x00' OR '1'='1",
    "é' UNION SELECT user, password FROM mysql.user -- ",
]
PRESENT = ["plain", *INJECTIONS[::2]]  # every other one is a real row; the rest must read as absent


@pytest.fixture
def conn(db_settings: Any) -> Any:
    connection = pymysql.connect(
        host=db_settings.host,
        port=db_settings.port,
        user=db_settings.user,
        password=db_settings.password,
        database=db_settings.name,
        charset="utf8mb4",
        autocommit=True,
    )
    with connection.cursor() as cur:
        # the demo schema's tags and comments (composed documents) are not these: this test needs its own shapes
        cur.execute("DROP TABLE IF EXISTS article_tags, tags, comments")  # article_tags' foreign key names tags
        cur.execute("CREATE TABLE tags (name VARCHAR(512) COLLATE utf8mb4_bin PRIMARY KEY, note TEXT NOT NULL)")
        cur.execute("CREATE TABLE comments (tenant VARCHAR(64) NOT NULL, id BIGINT NOT NULL, PRIMARY KEY (tenant, id))")
        cur.executemany("INSERT INTO tags (name, note) VALUES (%s, %s)", [(k, f"note of {k}") for k in PRESENT])
        cur.executemany("INSERT INTO comments (tenant, id) VALUES (%s, %s)", [(k, 7) for k in PRESENT])
    yield connection
    connection.close()


def counts(conn: Any) -> tuple[int, int]:
    with conn.cursor() as cur:
        cur.execute("SELECT (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM comments)")
        return tuple(cur.fetchone())  # type: ignore[return-value]


@pytest.mark.parametrize("sql_mode", ["default", "NO_BACKSLASH_ESCAPES"])
def test_each_injection_key_reads_exactly_its_own_row_or_none(conn: Any, sql_mode: str) -> None:
    # Given a session in the server's mode, or with NO_BACKSLASH_ESCAPES added (Aurora parameter groups can set it)
    if sql_mode != "default":
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    before = counts(conn)

    for key in ["plain", *INJECTIONS]:
        # When a trigger payload names the key, and the fetcher re-reads it
        payload = {"v": 1, "action": "update", "table": "tags", "pk": {"name": key}, "ts": 1764240000}
        [change] = parse_trigger_payload(payload, MAPPINGS)
        state = read_row(conn, MAPPINGS.tables["tags"], change)

        # Then it gets that row, or nothing, never another row
        expected = {"name": key, "note": f"note of {key}"} if key in PRESENT else None
        assert state.row == expected, key

        composite = {"v": 1, "action": "delete", "table": "comments", "pk": {"tenant": key, "id": 7}, "ts": 1}
        [change] = parse_trigger_payload(composite, MAPPINGS)
        assert read_row(conn, MAPPINGS.tables["comments"], change).exists == (key in PRESENT), key

    # and nothing was changed or dropped
    assert counts(conn) == before
