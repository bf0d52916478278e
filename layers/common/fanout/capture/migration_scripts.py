"""Migration scripts: the files, their ``${name}`` placeholders, and splitting a script into statements.

Migration files are named ``V<version>__<description>.sql`` (``V001__create_triggers.sql``);
:func:`load_migrations` reads them in version order, each with a checksum of its bytes.

Scripts are plain SQL split on ``;`` — no ``DELIMITER`` lines (that is a command of the
``mysql`` client, not SQL). :func:`split_statements` knows enough SQL to keep a
``CREATE TRIGGER ... BEGIN ... END`` body, whose statements end in ``;``, in one piece.
It is written by hand to follow the server's own lexical rules for exactly these scripts
(``-- `` needs a space, ``/*! */`` is code, ``DELIMITER`` is refused with a reason).

``${name}`` placeholders (the parser function's ARN, for one) are filled in from
configuration by :func:`render` just before a migration runs
(:class:`fanout.capture.migrations.MigrationRunner`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_MAX_DESCRIPTION = 200


class MigrationError(Exception):
    """A migration cannot be loaded, rendered or applied; the message says why."""


# --------------------------------------------------------------------------- splitting

_TokenKind = Literal["space", "comment", "string", "word", "semicolon", "code", "other"]
_INSIGNIFICANT: frozenset[str] = frozenset({"space", "comment"})
_WORD = re.compile(r"[\w$]+")
_SPACE = re.compile(r"\s+")
# After END these words close a block that was never counted (see split_statements).
_END_OF_UNCOUNTED_BLOCK = frozenset({"IF", "LOOP", "WHILE", "REPEAT"})


@dataclass(frozen=True)
class _Token:
    kind: _TokenKind
    text: str
    start: int
    end: int


def _line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1


def _end_of_quoted(sql: str, start: int) -> int:
    """Index just past the quoted token opening at ``start``."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if char == "\\" and quote != "`":  # backslash escapes (unless NO_BACKSLASH_ESCAPES)
            i += 2
        elif char == quote:
            if sql.startswith(quote, i + 1):  # a doubled quote stands for itself
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise MigrationError(f"unterminated {quote} quote starting on line {_line_of(sql, start)}")


def _starts_line_comment(sql: str, i: int) -> bool:
    if sql[i] == "#":
        return True
    # MySQL needs whitespace (or the end of input) after "--": "a--1" is arithmetic.
    return sql.startswith("--", i) and (i + 2 == len(sql) or sql[i + 2].isspace())


def _tokenize(sql: str) -> Iterator[_Token]:
    i = 0
    while i < len(sql):
        char = sql[i]
        kind: _TokenKind
        if char.isspace():
            match = _SPACE.match(sql, i)
            assert match is not None
            kind, end = "space", match.end()
        elif _starts_line_comment(sql, i):
            newline = sql.find("\n", i)
            kind, end = "comment", len(sql) if newline == -1 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            if close == -1:
                raise MigrationError(f"unterminated /* comment starting on line {_line_of(sql, i)}")
            # /*! ... */ and /*M! ... */ are executable comments: the server runs them.
            executable = sql.startswith("/*!", i) or sql.startswith("/*M!", i)
            kind, end = ("code" if executable else "comment"), close + 2
        elif char in "'\"`":
            kind, end = "string", _end_of_quoted(sql, i)
        elif char == ";":
            kind, end = "semicolon", i + 1
        elif (match := _WORD.match(sql, i)) is not None:
            kind, end = "word", match.end()
        else:
            kind, end = "other", i + 1
        yield _Token(kind, sql[i:end], i, end)
        i = end


def _keyword(token: _Token | None) -> str:
    return token.text.upper() if token is not None and token.kind == "word" else ""


def split_statements(sql: str) -> list[str]:
    """Split a script into statements on ``;``, keeping compound statements whole.

    Quotes (``'``, ``"``, backticks; backslash and doubled-quote escapes) and comments
    (``-- ``, ``#``, ``/* */``) are skipped over, so a ``;`` inside them never splits.
    Statements that hold nothing but comments are dropped; comments inside a statement
    are kept, comments before or after it are not.

    Compound bodies are tracked by a block depth, and a ``;`` splits only at depth 0:

    * ``BEGIN`` and ``CASE`` open a block. At depth 0, a ``BEGIN`` followed by ``;``,
      ``WORK`` or the end of the script starts a transaction instead, and opens nothing.
    * ``END`` closes a block, unless followed by ``IF``, ``LOOP``, ``WHILE`` or
      ``REPEAT``: those blocks are never counted, because ``IF`` and ``REPEAT`` are
      also function names (and ``IF EXISTS`` a DDL clause). A CASE expression ends with
      ``END``, a CASE statement with ``END CASE``; both close the CASE.

    So a stored-program body that contains ``;`` must be wrapped in ``BEGIN ... END``
    (a trigger whose body is a bare ``IF ... END IF`` with inner ``;`` is split). Not
    supported: ``BEGIN``/``END`` as unquoted identifiers, ``DELIMITER`` (refused with an
    error), the ``NO_BACKSLASH_ESCAPES`` mode, and compound bodies hidden in executable
    comments (``/*! ... */`` is kept as opaque text).
    """
    significant = [t for t in _tokenize(sql) if t.kind not in _INSIGNIFICANT]
    statements: list[str] = []
    current: list[_Token] = []
    depth = 0

    def finish() -> None:
        if current:
            statements.append(sql[current[0].start : current[-1].end])
            current.clear()

    for index, token in enumerate(significant):
        if token.kind == "semicolon" and depth == 0:
            finish()
            continue
        if not current and _keyword(token) == "DELIMITER":
            raise MigrationError(
                f"DELIMITER on line {_line_of(sql, token.start)} is a mysql client command, not SQL; "
                "end every statement with ';' and wrap compound bodies in BEGIN ... END"
            )
        current.append(token)
        word = _keyword(token)
        following = significant[index + 1] if index + 1 < len(significant) else None
        previous = _keyword(significant[index - 1]) if index > 0 else ""
        if word == "BEGIN":
            starts_transaction = following is None or following.kind == "semicolon" or _keyword(following) == "WORK"
            if depth > 0 or not starts_transaction:
                depth += 1
        elif word == "CASE" and previous != "END":  # the CASE of END CASE opens nothing
            depth += 1
        elif word == "END" and depth > 0 and _keyword(following) not in _END_OF_UNCOUNTED_BLOCK:
            depth -= 1
    if depth > 0:
        line = _line_of(sql, current[0].start) if current else _line_of(sql, len(sql))
        raise MigrationError(f"statement starting on line {line} has a BEGIN or CASE without a matching END")
    finish()
    return statements


# --------------------------------------------------------------------------- files

_FILE_NAME = re.compile(r"V(?P<version>\d+)__(?P<description>\w+)\.sql")
_MAX_VERSION = 2**31 - 1  # the history table's version column is a signed INT


@dataclass(frozen=True)
class Migration:
    """One migration file, as read from disk (placeholders not yet filled in)."""

    version: int
    description: str
    path: Path
    checksum: str
    sql: str


def checksum_of(data: bytes) -> str:
    """SHA-256 of a file's bytes with CRLF line ends normalised to LF."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def load_migrations(directory: str | Path) -> list[Migration]:
    """Read every ``V<digits>__<description>.sql`` file in ``directory``, by version.

    Files that do not end in ``.sql`` are ignored; a ``.sql`` file with any other name
    and two files with the same version number are errors that name the files.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".sql":
            continue
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} is badly named: expected V<digits>__<description>.sql, "
                "e.g. V001__create_triggers.sql"
            )
        version = int(match["version"])
        description = match["description"].replace("_", " ").strip()
        if version > _MAX_VERSION:
            raise MigrationError(f"migration file {path.name}: version {version} is too large")
        if not description or len(description) > _MAX_DESCRIPTION:
            raise MigrationError(f"migration file {path.name}: description must be 1-{_MAX_DESCRIPTION} characters")
        if version in by_version:
            raise MigrationError(
                f"migration files {by_version[version].path.name} and {path.name} have the same version {version}"
            )
        data = path.read_bytes()
        try:
            sql = data.replace(b"\r\n", b"\n").decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration file {path.name} is not UTF-8: {exc}") from None
        by_version[version] = Migration(version, description, path, checksum_of(data), sql)
    return [by_version[v] for v in sorted(by_version)]


# --------------------------------------------------------------------------- placeholders

_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE_VALUE = re.compile(r"[A-Za-z0-9:_./+=,@-]*")


def validate_placeholders(placeholders: Mapping[str, str]) -> None:
    """Refuse names that could not appear as ``${name}`` and values outside a safe alphabet."""
    for name, value in placeholders.items():
        if not isinstance(name, str) or _PLACEHOLDER_NAME.fullmatch(name) is None:
            raise MigrationError(f"placeholder name {name!r} is not a valid identifier")
        if not isinstance(value, str) or _SAFE_VALUE.fullmatch(value) is None:
            raise MigrationError(
                f"placeholder {name} has value {value!r}; values may only contain letters, digits and :_./+=,@-"
            )


def render(sql: str, placeholders: Mapping[str, str], *, source: str = "<sql>") -> str:
    """Replace each ``${name}`` in ``sql`` with ``placeholders[name]``.

    Values are inserted verbatim, quotes and all, wherever the placeholder appears
    (inside string literals too). That is safe only because they come from deployment
    configuration — ARNs, schema names — never from users; they are still checked
    against a conservative alphabet (``[A-Za-z0-9:_./+=,@-]``, so no quote, backslash,
    space or ``;`` can get in). ``source`` names the file in error messages. There is
    no escape for a literal ``${``.
    """
    validate_placeholders(placeholders)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if _PLACEHOLDER_NAME.fullmatch(name) is None:
            raise MigrationError(f"{source}: malformed placeholder {match.group(0)!r}")
        if name not in placeholders:
            raise MigrationError(f"{source}: placeholder ${{{name}}} is used but no value was given for it")
        return placeholders[name]

    return _PLACEHOLDER.sub(substitute, sql)
