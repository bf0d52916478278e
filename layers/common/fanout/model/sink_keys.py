"""Sink keys, both ways: a source row's key as each sink's id or key, and a sink's key back to the source key.

Forward: the mapping's key formats render the row's key (``opensearch.document_id``, default ``{key}``;
the DynamoDB partition and sort keys, default ``{table}#{key}``). An id longer than the sink allows
(OpenSearch ``_id``: 512 bytes; a DynamoDB partition key: 2048, a sort key: 1024) is replaced by a
bounded one, :func:`bounded_sink_id`: the start of the id, then ``{v1-sha256:<hex>}``, the SHA-256 of
the whole id. A rendered id never contains a brace, so a bounded id cannot equal another row's plain id,
and two bounded ids are equal only if the ids are. The full id is kept in the document or item, in
``_fanout_key`` (OpenSearch: the id as text; DynamoDB: a map from key attribute to its full value),
which is how reconcile reads such a key back. A DynamoDB key that renders empty is refused for that
row (:class:`UnrepresentableRow`).

Back (reconcile's orphan check): the mapping's key formats are built so that a rendered key maps back to
exactly one source key (:mod:`fanout.model.mapping`): every value is percent-encoded,
and placeholders are separated by characters an encoded value cannot contain.
So a format is read back with a regular expression in which each placeholder
matches the encoded alphabet only; ``{table}`` must be the table itself.

A bounded id is read back from the full id kept beside it (``_fanout_key``): it is this
table's key only if that full id parses and bounds to exactly the stored id.

A sink key that does not parse is not a key of this table's mapping: reconcile
reports it as an orphan it cannot repair through the fetch path.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import unquote

from fanout.model.change import Change, KeyValue
from fanout.model.key_format import KEY_SEPARATOR, KeyFormat, default_key_text, encode_key_value
from fanout.model.mapping import FULL_KEY_FIELD, TableMapping

MAX_DOCUMENT_ID_BYTES = 512  # OpenSearch's _id limit
MAX_PARTITION_KEY_BYTES = 2048  # DynamoDB's limits on key attribute values
MAX_SORT_KEY_BYTES = 1024
BOUNDED_ID_VERSION = "v1-sha256"  # the marker of a bounded id: "{v1-sha256:<64 hex digits>}"


class UnrepresentableRow(ValueError):
    """The row cannot be stored in a sink as the mapping says; retrying cannot help."""


# --------------------------------------------------------------------------- source key -> sink key


def bounded_sink_id(rendered: str, limit: int) -> str:
    """``rendered`` if it fits ``limit`` UTF-8 bytes, else its start and ``{v1-sha256:<hex of all of it>}``."""
    data = rendered.encode("utf-8")
    if len(data) <= limit:
        return rendered
    suffix = "{" + BOUNDED_ID_VERSION + ":" + hashlib.sha256(data).hexdigest() + "}"
    return data[: limit - len(suffix)].decode("utf-8", "ignore") + suffix


def is_bounded_id(sink_id: str) -> bool:
    return "{" + BOUNDED_ID_VERSION + ":" in sink_id


def opensearch_full_id(mapping: TableMapping, change: Change) -> str:
    """The row's id by the mapping's ``opensearch.document_id`` format (default ``{key}``), whatever its length."""
    return mapping.opensearch.document_id.render(change.table, change.key)


def opensearch_document_id(mapping: TableMapping, change: Change) -> str:
    """The row's document id: its full id, bounded to OpenSearch's 512 bytes (:func:`bounded_sink_id`)."""
    return bounded_sink_id(opensearch_full_id(mapping, change), MAX_DOCUMENT_ID_BYTES)


def dynamodb_partition_key(change: Change) -> str:
    """The default partition key value, ``<table>#<key>`` (the format ``{table}#{key}``)."""
    return f"{change.table}#{default_key_text(change.key_values)}"


def dynamodb_key_limits(mapping: TableMapping) -> list[tuple[str, int]]:
    """Each key attribute of the mapping with DynamoDB's limit on its value, in bytes."""
    limits = [(mapping.dynamodb.partition_key.attribute, MAX_PARTITION_KEY_BYTES)]
    if mapping.dynamodb.sort_key is not None:
        limits.append((mapping.dynamodb.sort_key.attribute, MAX_SORT_KEY_BYTES))
    return limits


def dynamodb_full_key(mapping: TableMapping, change: Change) -> dict[str, str]:
    """The row's DynamoDB key attributes by the mapping's key formats, whatever their length."""
    key: dict[str, str] = {}
    formats = [(mapping.dynamodb.partition_key, "partition")]
    if mapping.dynamodb.sort_key is not None:
        formats.append((mapping.dynamodb.sort_key, "sort"))
    for attribute, kind in formats:
        value = attribute.value.render(change.table, change.key)
        if not value:
            raise UnrepresentableRow(f"the {kind} key {attribute.attribute!r} would be empty, which DynamoDB refuses")
        key[attribute.attribute] = value
    return key


def dynamodb_key(mapping: TableMapping, change: Change) -> dict[str, str]:
    """The row's DynamoDB key attributes, by the mapping's key formats, each bounded to DynamoDB's limit."""
    return bounded_dynamodb_key(mapping, dynamodb_full_key(mapping, change))


def bounded_dynamodb_key(mapping: TableMapping, full: dict[str, str]) -> dict[str, str]:
    """The full key attributes (:func:`dynamodb_full_key`), each bounded to DynamoDB's limit."""
    return {attribute: bounded_sink_id(full[attribute], limit) for attribute, limit in dynamodb_key_limits(mapping)}


# --------------------------------------------------------------------------- sink key -> source key

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
    return None if text is None else parse_sink_key(mapping, [(mapping.opensearch.document_id, text)])


def dynamodb_item_key(mapping: TableMapping, item: dict[str, Any]) -> tuple[KeyValue, ...] | None:
    full = item.get(FULL_KEY_FIELD)
    full = full if isinstance(full, dict) else {}
    formats = {mapping.dynamodb.partition_key.attribute: mapping.dynamodb.partition_key.value}
    if mapping.dynamodb.sort_key is not None:
        formats[mapping.dynamodb.sort_key.attribute] = mapping.dynamodb.sort_key.value
    rendered: list[tuple[KeyFormat, str]] = []
    for attribute, limit in dynamodb_key_limits(mapping):
        text = _full_id(item.get(attribute), full.get(attribute), limit)
        if text is None:
            return None
        rendered.append((formats[attribute], text))
    return parse_sink_key(mapping, rendered)
