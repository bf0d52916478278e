"""SQL text built from the validated mapping: the one identifier-quoting function and the column lists reads share.

Identifiers come only from the validated mapping (or the connection's own schema name),
never from a payload; quoting them keeps reserved words and odd names safe. Values are
never spliced into SQL text: they are bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: quoting stays importable without the mapping
    from fanout.model.mapping import TableMapping


def quote_identifier(name: str) -> str:
    """A backtick-quoted identifier; a backtick inside the name is doubled."""
    return "`" + name.replace("`", "``") + "`"


def column_list(columns: Iterable[str]) -> str:
    """The columns quoted and comma-separated: a SELECT list, an ORDER BY."""
    return ", ".join(quote_identifier(c) for c in columns)


def selected_columns(mapping: TableMapping) -> str:
    """What a read of the mapping's rows selects: its ``columns``, or ``*`` for every column."""
    return "*" if mapping.columns is None else column_list(mapping.columns)
