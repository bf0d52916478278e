"""Which columns a capture trigger reads, from its SQL: what a DDL must not take away from under it.

A trigger that names a column the table no longer has fails every write to that table (MySQL 8:
``1054 Unknown column 'id' in 'NEW'``). The post-deploy hook refuses to install such a trigger
(fanout.capture.migrations) and ``fanout check`` names one that is installed (fanout.operations.schema_check).
Read from the text the generators write: ``NEW.`c```, ``OLD.`c``` (the trigger's own table; unquoted names
too, as V001 wrote them) and ``alias.`c``` for the tables a cascade trigger joins (``FROM `t` AS alias``).
"""

from __future__ import annotations

import re

_NAME = r"(`(?:[^`]|``)+`|\w+)"
_CREATE = re.compile(
    r"CREATE\s+(?:DEFINER\s*=\s*\S+\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    + _NAME
    + r"\s+(BEFORE|AFTER)\s+(\w+)\s+ON\s+"
    r"(?:" + _NAME + r"\.)?" + _NAME + r"\s+FOR\s+EACH\s+ROW\s",
    re.IGNORECASE,
)
_ALIAS = re.compile(r"\b(?:FROM|JOIN)\s+" + _NAME + r"\s+AS\s+(\w+)", re.IGNORECASE)
_REFERENCE = re.compile(r"\b(\w+)\." + _NAME)


def unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def created_trigger(statement: str) -> tuple[str, str, str] | None:
    """(trigger name, table, body) of a ``CREATE TRIGGER`` statement; None for any other statement."""
    found = _CREATE.match(statement.lstrip())
    if found is None:
        return None
    return unquote(found.group(1)), unquote(found.group(5)), statement.lstrip()[found.end() :]


def columns_read(table: str, body: str) -> dict[str, set[str]]:
    """The columns a trigger body on ``table`` reads, by table (NEW/OLD are ``table``; aliases as joined)."""
    read: dict[str, set[str]] = {}
    for statement in body.split(";"):  # an alias names a table within its statement only
        aliases = {"NEW": table, "OLD": table}
        aliases |= {alias: unquote(joined) for joined, alias in _ALIAS.findall(statement)}
        for alias, column in _REFERENCE.findall(statement):
            if alias in aliases:
                read.setdefault(aliases[alias], set()).add(unquote(column))
    return read


def missing_columns(table: str, body: str, columns: dict[str, set[str]]) -> list[str]:
    """``table.column`` for every column the body reads that ``columns`` (table -> its columns) lacks, sorted.

    A table ``columns`` does not hold at all is left out: a migration may create it before its trigger, and a
    trigger on a table that does not exist is refused by the engine itself (1146)."""
    known = {name.lower(): {c.lower() for c in names} for name, names in columns.items()}
    missing = []
    for read_table, read in sorted(columns_read(table, body).items()):
        if read_table.lower() not in known:
            continue
        # column names are case-insensitive in MySQL
        missing += [f"{read_table}.{c}" for c in sorted(read) if c.lower() not in known[read_table.lower()]]
    return missing
