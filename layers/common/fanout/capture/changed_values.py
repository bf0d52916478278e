"""The changed-values condition of a capture trigger that skips an update changing nothing a document reads.

``OLD.c <=> NEW.c`` compares under the column's collation: with ``utf8mb4_unicode_ci`` (case- and
accent-insensitive, PAD SPACE) 'Ann' → 'ANN', 'e' → 'é' and 'hello' → 'hello  ' are all "unchanged", yet
a sink stores the new text. So each column is compared as ``CAST(... AS BINARY)``: a string's bytes in its
character set (no collation, no padding: trailing spaces count), and any other type's text as the server
sends it to the fetcher's reads (numbers, DECIMAL at its scale, a DOUBLE's shortest exact digits, temporal
values with their fraction, ENUM and SET labels, JSON serialised: ``1`` and ``1.0`` differ), BLOB and BIT
values as they are. ``<=>`` keeps NULL apart from every value. The condition depends only on the column
names, so the generated file still depends only on the mapping (docs/architecture.md, "Change detection").
"""

from __future__ import annotations

from collections.abc import Sequence

from fanout.source.sql import quote_identifier

_INDENT = "    "


def same_value(column: str) -> str:
    """True when OLD and NEW hold the same bytes in ``column`` (both NULL included)."""
    quoted = quote_identifier(column)
    return f"CAST(OLD.{quoted} AS BINARY) <=> CAST(NEW.{quoted} AS BINARY)"


def changed_values_condition(columns: Sequence[str]) -> str:
    """``NOT (same AND same ...)``: true when any of ``columns`` changed byte for byte, one column a line (a wide
    table stays readable, and under 120 characters a line), indented for a trigger's ``IF``."""
    same = f"\n{_INDENT * 2}AND ".join(same_value(column) for column in columns)
    return f"NOT (\n{_INDENT * 2}{same}\n{_INDENT})"
