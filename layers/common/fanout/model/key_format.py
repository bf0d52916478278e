"""The key-format language: templates such as ``"{table}#{key}"`` that turn a row's key into a sink key.

``{<key column>}`` is that key value, ``{key}`` all key values in key order joined by ``|``,
``{table}`` the source table's name (these two win over key columns so named); each value is
percent-encoded (``urllib.parse.quote(str(v), safe="")``), so a value can never contain a
separator. Two placeholders must be separated by a character the first one can never
contain, so that a sink key maps back to exactly one source key (:mod:`fanout.model.sink_keys`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# What urllib.parse.quote(value, safe="") can produce: unreserved characters and %XX escapes.
ENCODED_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-%")
KEY_SEPARATOR = "|"


def encode_key_value(value: Any) -> str:
    if type(value) is int:  # digits and "-", which quote leaves as they are: the common key, without its call
        return str(value)
    return quote(str(value), safe="")


def default_key_text(values: Iterable[Any]) -> str:
    """``{key}``: every key value percent-encoded, joined by ``|`` (the default document id)."""
    return KEY_SEPARATOR.join(encode_key_value(v) for v in values)


@dataclass(frozen=True)
class KeyFormat:
    """A validated key template, e.g. ``"{table}#{key}"`` or ``"{tenant}:{slug}"``."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_placeholder, literal text or placeholder name)

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(name for is_placeholder, name in self.parts if is_placeholder)

    def render(self, table: str, key: tuple[tuple[str, Any], ...]) -> str:
        values = dict(key)
        out = []
        for is_placeholder, name in self.parts:
            if not is_placeholder:
                out.append(name)
            elif name == "key":
                out.append(default_key_text(values.values()))
            elif name == "table":
                out.append(encode_key_value(table))
            else:
                out.append(encode_key_value(values[name]))
        return "".join(out)


def parse_key_format(text: Any, allowed: Iterable[str], fail: Callable[[str], Exception]) -> KeyFormat:
    """Parse and check a key template; ``fail(message)`` builds the error naming the field."""
    if not isinstance(text, str) or not text or len(text) > 256:
        raise fail(f"{text!r} must be a non-empty template string of at most 256 characters")
    allowed = set(allowed)
    parts: list[tuple[bool, str]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append((False, text[position : match.start()]))
        name = match.group(1)
        if name not in allowed:
            raise fail(f"placeholder {{{name}}} in {text!r} is not one of {sorted('{' + a + '}' for a in allowed)}")
        parts.append((True, name))
        position = match.end()
    if position < len(text):
        parts.append((False, text[position:]))
    for is_placeholder, literal in parts:
        if not is_placeholder and ("{" in literal or "}" in literal):
            raise fail(f"{text!r} has an unmatched brace")
    previous: str | None = None
    for is_placeholder, name in parts:
        if is_placeholder:
            if previous is not None:
                raise fail(
                    f"{{{previous}}} and {{{name}}} in {text!r} need a separator between them that "
                    "an encoded value cannot contain (e.g. ':', '#', '/')"
                )
            previous = name
        elif previous is not None:
            alphabet = ENCODED_ALPHABET | ({KEY_SEPARATOR} if previous == "key" else set())
            if not set(name) - alphabet:
                raise fail(
                    f"the separator {name!r} after {{{previous}}} in {text!r} is made of characters an encoded "
                    "value can contain; use e.g. ':', '#' or '/'"
                )
            previous = None
    return KeyFormat(text, tuple(parts))


def covered_key_columns(formats: Iterable[KeyFormat], key_columns: tuple[str, ...]) -> set[str]:
    """The key columns the formats name between them (``{key}`` names them all)."""
    covered: set[str] = set()
    for key_format in formats:
        if "key" in key_format.placeholders:
            covered.update(key_columns)
        # {key} and {table} always mean the special values, even for a key column so named
        covered.update((key_format.placeholders - {"key", "table"}) & set(key_columns))
    return covered
