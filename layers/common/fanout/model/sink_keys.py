"""From a sink's key back to the source row's key (reconcile's orphan check).

The mapping's key formats are built so that a rendered key maps back to
exactly one source key (:mod:`fanout.model.mapping`): every value is percent-encoded,
and placeholders are separated by characters an encoded value cannot contain.
So a format is read back with a regular expression in which each placeholder
matches the encoded alphabet only; ``{table}`` must be the table itself.

A bounded id (a key longer than the sink's id, :func:`fanout.sinks.documents.bounded_sink_id`)
is read back from the full id kept beside it (``_fanout_key``): it is this
table's key only if that full id parses and bounds to exactly the stored id.

A sink key that does not parse is not a key of this table's mapping: reconcile
reports it as an orphan it cannot repair through the fetch path.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from fanout.model.change import KeyValue
from fanout.model.key_format import KEY_SEPARATOR, KeyFormat, encode_key_value
from fanout.model.mapping import FULL_KEY_FIELD, TableMapping
from fanout.sinks.documents import MAX_DOCUMENT_ID_BYTES, bounded_sink_id, dynamodb_key_limits, is_bounded_id

_ENCODED = r"[A-Za-z0-9_.~%-]*"
_ENCODED_WITH_SEPARATOR = r"[A-Za-z0-9_.~%|-]*"


def _pattern(key_format: KeyFormat) -> tuple[re.Pattern[str], list[str]]:
    regex: list[str] = []
    names: list[str] = []
    for is_placeholder, name in key_format.parts:
        if not is_placeholder:
            regex.append(re.escape(name))
            continue
        regex.append(f"({_ENCODED_WITH_SEPARATOR if name == 'key' else _ENCODED})")
        names.append(name)
    return re.compile("^" + "".join(regex) + "$"), names


def _typed(mapping: TableMapping, column: str, text: str) -> KeyValue | None:
    value = unquote(text, errors="strict")
    kind = next(k.type for k in mapping.primary_key if k.column == column)
    if kind == "string":
        return value
    try:
        number = int(value)
    except ValueError:
        return None
    return number if str(number) == value else None  # "007" is not the int key 7's rendering


def parse_sink_key(mapping: TableMapping, rendered: list[tuple[KeyFormat, str]]) -> tuple[KeyValue, ...] | None:
    """The source key whose rendering by each format is the given text, or None if there is none."""
    found: dict[str, KeyValue] = {}
    for key_format, text in rendered:
        pattern, names = _pattern(key_format)
        match = pattern.match(text)
        if match is None:
            return None
        for name, part in zip(names, match.groups(), strict=True):
            values: dict[str, Any] = {}
            if name == "table":
                if part != encode_key_value(mapping.table):
                    return None
                continue
            try:
                if name == "key":
                    parts = part.split(KEY_SEPARATOR)
                    if len(parts) != len(mapping.key_columns):
                        return None
                    values = dict(zip(mapping.key_columns, parts, strict=True))
                else:
                    values = {name: part}
                for column, raw in values.items():
                    typed = _typed(mapping, column, raw)
                    if typed is None or found.setdefault(column, typed) != typed:
                        return None
            except UnicodeDecodeError:
                return None
    if set(found) != set(mapping.key_columns):
        return None
    key = tuple(found[c] for c in mapping.key_columns)
    # the round trip must give the very same text (no alternative encodings of one value)
    pairs = tuple(zip(mapping.key_columns, key, strict=True))
    if any(f.render(mapping.table, pairs) != text for f, text in rendered):
        return None
    return key


def _full_id(stored: Any, full: Any, limit: int) -> str | None:
    """The full id a stored (possibly bounded) id stands for, or None if ``full`` does not bound to it."""
    if not isinstance(stored, str):
        return None
    if not is_bounded_id(stored):
        return stored
    return full if isinstance(full, str) and bounded_sink_id(full, limit) == stored else None


def opensearch_key(mapping: TableMapping, doc_id: str, full_id: Any = None) -> tuple[KeyValue, ...] | None:
    """The source key of a document id; ``full_id``: the document's ``_fanout_key`` (for a bounded id)."""
    text = _full_id(doc_id, full_id, MAX_DOCUMENT_ID_BYTES)
    return None if text is None else parse_sink_key(mapping, [(mapping.opensearch_document_id, text)])


def dynamodb_item_key(mapping: TableMapping, item: dict[str, Any]) -> tuple[KeyValue, ...] | None:
    full = item.get(FULL_KEY_FIELD)
    full = full if isinstance(full, dict) else {}
    formats = {mapping.dynamodb_partition_key.attribute: mapping.dynamodb_partition_key.value}
    if mapping.dynamodb_sort_key is not None:
        formats[mapping.dynamodb_sort_key.attribute] = mapping.dynamodb_sort_key.value
    rendered: list[tuple[KeyFormat, str]] = []
    for attribute, limit in dynamodb_key_limits(mapping):
        text = _full_id(item.get(attribute), full.get(attribute), limit)
        if text is None:
            return None
        rendered.append((formats[attribute], text))
    return parse_sink_key(mapping, rendered)
