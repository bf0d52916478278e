"""Outside data as operator output shows it: one line, nothing the terminal would act on.

Table names, keys, reasons and ids shown by ``fanout status`` and ``fanout dlq``
can come from hostile payloads (a dead letter holds whatever was invoked). Printed
raw, a newline starts a forged line, a carriage return or an ANSI escape rewrites
the screen, and a bidi override (U+202E) reverses what follows. :func:`shown`
escapes every such character the way Python writes it in a string literal, and
the backslash itself, so the text stays readable, one line, and unambiguous.
"""

from __future__ import annotations

import unicodedata
from typing import Any

# Cc: controls (NUL, ESC, CR, LF, DEL, C1); Cf: format characters (bidi overrides and isolates, zero-width
# joiners, BOM); Zl/Zp: line and paragraph separators; Cs: lone surrogates; Co/Cn: private use, unassigned.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(value: Any) -> str:
    """``value`` as text safe to print on one line of operator output (mapping names come out unchanged)."""
    return "".join(_escape(char) for char in str(value))
