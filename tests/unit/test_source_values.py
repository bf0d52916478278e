"""The conversions only column metadata allows: TIMESTAMP is UTC, BIT an integer, SET a set, JSON parsed later."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pymysql.constants import FIELD_TYPE, FLAG

from fanout.model.change import Change
from fanout.model.mapping import parse_mappings
from fanout.source.rows import JsonText, has_exact_key, typed_row

MAPPING = parse_mappings({"tables": {"t": {"primary_key": [{"column": "id"}], "json_columns": ["json_text"]}}}).tables[
    "t"
]


@dataclass
class Field:
    flags: int


class Result:
    def __init__(self, flags: list[int]) -> None:
        self.fields = [Field(f) for f in flags]


class Cursor:
    """What pymysql's cursor exposes after a fetch: the DB-API description and the result's field flags."""

    def __init__(self, columns: list[tuple[str, int, int]], with_flags: bool = True) -> None:
        self.description = [(name, type_code, None, None, None, None, True) for name, type_code, _ in columns]
        if with_flags:
            self._result = Result([flags for _, _, flags in columns])


COLUMNS = [
    ("id", FIELD_TYPE.LONG, 0),
    ("ts", FIELD_TYPE.TIMESTAMP, 0),
    ("dt", FIELD_TYPE.DATETIME, 0),
    ("bits", FIELD_TYPE.BIT, FLAG.UNSIGNED),
    ("tags", FIELD_TYPE.STRING, FLAG.SET),
    ("no_tags", FIELD_TYPE.STRING, FLAG.SET),
    ("state", FIELD_TYPE.STRING, FLAG.ENUM),
    ("mysql_json", FIELD_TYPE.JSON, 0),
    ("json_text", FIELD_TYPE.BLOB, 0),  # JSON in a TEXT column: declared in the mapping
    ("text", FIELD_TYPE.BLOB, 0),
    ("nothing", FIELD_TYPE.TIMESTAMP, 0),
]
VALUES: list[Any] = [
    7,
    dt.datetime(2026, 11, 27, 8, 0, 0, 500000),
    dt.datetime(2026, 11, 27, 10, 0),
    b"\x02\xaa",
    "x,z",
    "",
    "published",
    '{"a": 1}',
    "[1, 2]",
    '{"not": "json, just text"}',
    None,
]


def test_values_that_need_column_metadata_are_converted() -> None:
    row = typed_row(Cursor(COLUMNS), VALUES, MAPPING)

    assert row == {
        "id": 7,
        "ts": dt.datetime(2026, 11, 27, 8, 0, 0, 500000, tzinfo=dt.UTC),  # the session runs in UTC
        "dt": dt.datetime(2026, 11, 27, 10, 0),  # DATETIME has no zone
        "bits": 682,
        "tags": frozenset({"x", "z"}),
        "no_tags": frozenset(),
        "state": "published",
        "mysql_json": JsonText('{"a": 1}'),
        "json_text": JsonText("[1, 2]"),
        "text": '{"not": "json, just text"}',
        "nothing": None,
    }


def test_without_field_flags_sets_stay_strings_and_nothing_else_changes() -> None:
    row = typed_row(Cursor(COLUMNS, with_flags=False), VALUES, MAPPING)

    assert row["tags"] == "x,z" and row["bits"] == 682 and row["mysql_json"] == JsonText('{"a": 1}')


def test_a_row_is_the_change_s_row_only_if_its_stored_key_is_exactly_the_change_s() -> None:
    change = Change("t", (("tenant", "acme"), ("slug", "a")), "update", 1)

    assert has_exact_key({"tenant": "acme", "slug": "a", "x": 1}, change)
    assert not has_exact_key({"tenant": "ACME", "slug": "a"}, change)  # equal only to a _ci collation
    assert not has_exact_key({"tenant": "acme", "slug": "a "}, change)  # equal only under PAD SPACE
    assert has_exact_key({"id": 5}, Change("t", (("id", 5),), "update", 1))
