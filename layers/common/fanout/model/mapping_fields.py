"""Checks for the fields of one table's mapping entry: each raises :class:`FieldError` naming the field.

:func:`fanout.model.mapping.parse_mappings` turns a ``FieldError`` into a ``MappingError``
that names the table too, in one place, so no check has to be handed the table's name.
"""

from __future__ import annotations

import re
from typing import Any

KEY_TYPES = ("int", "string")  # a key column's type, and a referenced column's
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


class FieldError(ValueError):
    """One field of a table's entry is invalid."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def identifier(field: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise FieldError(field, f"{value!r} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_$]*, at most 64)")
    return value


def column_list(field: str, value: Any, columns: tuple[str, ...] | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FieldError(field, "must be a list of column names")
    names = tuple(identifier(f"{field}[{i}]", c) for i, c in enumerate(value))
    if len(set(names)) != len(names):
        raise FieldError(field, "lists a column twice")
    if columns is not None:
        unread = [c for c in names if c not in columns]
        if unread:
            raise FieldError(field, f"{unread} are not among the columns read ('columns')")
    return names


def renames(
    field: str, value: Any, columns: tuple[str, ...] | None, name_pattern: re.Pattern[str], what: str
) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise FieldError(field, 'must be an object {"column": "new name"}')
    pairs: list[tuple[str, str]] = []
    for column, target in value.items():
        identifier(f"{field}.{column}", column)
        if columns is not None and column not in columns:
            raise FieldError(f"{field}.{column}", "is not among the columns read ('columns')")
        if not isinstance(target, str) or not name_pattern.match(target):
            raise FieldError(f"{field}.{column}", f"{target!r} is not a valid {what}")
        pairs.append((column, target))
    targets = [t for _, t in pairs]
    if len(set(targets)) != len(targets):
        raise FieldError(field, "renames two columns to the same name")
    return tuple(pairs)


def check_output_names(field: str, names: list[tuple[str, str]], reserved: frozenset[str]) -> None:
    """``names``: (column, output name) for every column a sink will get; none may collide or be reserved."""
    seen: dict[str, str] = {}
    for column, name in names:
        if name in reserved:
            raise FieldError(field, f"column {column!r} would be written as {name!r}, a name the sink reserves")
        if name in seen:
            raise FieldError(field, f"columns {seen[name]!r} and {column!r} would both be written as {name!r}")
        seen[name] = column
