"""What an error may say in a log line: never row data.

A failed re-read or sink write is logged, and raised (Lambda prints a raised
error in the function's log and puts it in the on-failure record). Most errors
name only keys, tables and codes, but OpenSearch's mapping errors quote the
row: ``failed to parse field [title] ... Preview of field's value: '...'``.
:func:`describe_error` keeps what an operator needs to act (the exception type,
the HTTP status, the error type, the root cause's type) and drops the server's
free text; the row itself is one re-read away (``fanout dlq show``, the source).
"""

from __future__ import annotations

import re
from typing import Any

_ERROR_TYPE = re.compile(r"[A-Za-z0-9_.]{1,100}")
WITHHELD = "<server text withheld>"


def _root_cause_type(info: Any) -> str:
    try:
        kind = info["error"]["root_cause"][0]["type"]
    except (LookupError, TypeError):
        return ""
    return kind if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else ""


def _redacted(exc: BaseException) -> str | None:
    """The printable form of one exception, or None when its own text carries no row data."""
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
    from opensearchpy.exceptions import TransportError

    if not isinstance(exc, TransportError) or isinstance(exc, OpenSearchConnectionError):
        return None  # connection errors describe the endpoint, not the document
    error = exc.error if isinstance(exc.error, str) and _ERROR_TYPE.fullmatch(exc.error) else WITHHELD
    parts = [str(exc.status_code), repr(error)]
    root = _root_cause_type(exc.info)
    if root and root != error:
        parts.append(f"root cause {root}")
    return f"{type(exc).__name__}({', '.join(parts)})"


def describe_error(exc: BaseException) -> str:
    """``str(exc)`` with the text of any error in its chain that may quote row data replaced by a safe summary."""
    text = str(exc)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        safe = _redacted(current)
        if safe is not None:
            raw = str(current)
            if current is exc:
                text = safe
            elif raw and raw in text:
                text = text.replace(raw, safe)
            else:  # the wrapper says it some other way: keep nothing of it but its type
                text = f"{type(exc).__name__} caused by {safe}"
        current = current.__cause__ or current.__context__
    return text


def describe_item_error(error: Any) -> str:
    """A ``_bulk`` item's ``error`` object as its type and root cause's type, never its reason text."""
    if not isinstance(error, dict):
        return WITHHELD
    kind = error.get("type")
    kind = kind if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else WITHHELD
    root = _root_cause_type({"error": error})
    caused_by = error.get("caused_by")
    cause = caused_by.get("type") if isinstance(caused_by, dict) else None
    cause = cause if isinstance(cause, str) and _ERROR_TYPE.fullmatch(cause) else ""
    detail = root if root and root != kind else cause
    return f"{kind} (caused by {detail})" if detail else kind
