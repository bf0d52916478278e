"""Sinks: where a re-read row is written. Each keeps the highest version it has seen.

A sink never assumes it is the only writer of a key: Lambda may run several
fetchers for one row at once, a backfill may write beside them, and a retry
may repeat a write. Every write is conditional on the version it carries, so
whichever arrives last, the highest version stays.

Each sink builds what it stores (:mod:`fanout.sinks.opensearch`, :mod:`fanout.sinks.dynamodb`) from the
reader's values (:mod:`fanout.source.reader`), in the form it can hold without losing information
(README.md "Type mapping" has the same table, with the explicit OpenSearch mapping recommended for each
type); ids and keys come from :mod:`fanout.model.sink_keys`. What both forms share is here.

=============================  ==================================  ==================================
MySQL column (value read)      OpenSearch document (JSON)          DynamoDB attribute
=============================  ==================================  ==================================
NULL                           null                                NULL
TINYINT … BIGINT [UNSIGNED]    number, exact digits (1)            N, exact
DECIMAL(p,s)                   string, exact digits and scale      N, exact value (2)
FLOAT / DOUBLE                 number (shortest round-trip form)   N from the same digits (2)
DATE                           "2026-11-27"                        S, same text
DATETIME(fsp)                  "2026-11-27T10:00:00.123456",       S, same text
                               no zone: as stored (3)
TIMESTAMP(fsp)                 "2026-11-27T10:00:00.123456Z",      S, same text
                               UTC (3)
TIME(fsp)                      "-838:59:59.000000" … "838:59:59"   S, same text
YEAR                           number                              N
CHAR/VARCHAR/TEXT (utf8mb4)    string, as stored                   S, as stored; "" kept (4)
ENUM                           string                              S
SET                            sorted list of member strings       L of S (sorted; [] when empty)
JSON                           the parsed value (object, array,    M / L / S / N / BOOL / NULL,
                               string, number, boolean, null)      numbers exact (2), never floats
BIT(n)                         number (the bits as unsigned int)   N
BINARY/VARBINARY/BLOB          base64 string, or left out          B (raw bytes), or base64 S, or
                               (``opensearch.binary``)             left out (``dynamodb.binary``)
=============================  ==================================  ==================================

(1) JSON carries every integer exactly; OpenSearch's dynamic mapping makes an
integer field ``long``, which holds BIGINT but not BIGINT UNSIGNED above
2^63-1: map such a column as ``unsigned_long`` (OpenSearch 2.8+) in an index
you create beforehand (the sink never changes an existing index).

(2) DynamoDB numbers hold 38 significant digits, magnitudes from 1E-130 to
9.9999999999999999999999999999999999999E+125, and DynamoDB trims trailing zeros
(DECIMAL 1.10 reads back as 1.1: the value, not the scale; OpenSearch's string
keeps the scale). DynamoDB hands a number back as plain digits, and boto3's
resource layer refuses more than 38 of them (``decimal.Rounded``): an N of 1E+38
or more would make the whole item unreadable with ``Table.get_item``. So a
number is N only if it has at most 38 significant digits and a magnitude from
1E-130 up to (not including) 1E+38; any other number (a DECIMAL(65,30) with
many digits, a DOUBLE of 1e38 or 1e-131) is stored as S, the exact digits
(``str(Decimal)``), rather than rounded or refused.

(3) The fetcher's session runs in UTC (``time_zone = '+00:00'``). TIMESTAMP
values are UTC and written with ``Z``. DATETIME values carry no zone: they
are written as stored, without one (OpenSearch reads a zone-less date as UTC;
if the application stores local times in DATETIME, search on them knowing
that). Microseconds appear only when non-zero (Python's ``isoformat``);
OpenSearch's date parsing reads both forms. Zero dates ("0000-00-00"), where
sql_mode allows them, arrive as strings and are written as such.

(4) DynamoDB has accepted empty strings and binaries in non-key attributes
since 2020; a key attribute may not be empty, so a key format that renders
empty is refused for that row (:mod:`fanout.model.sink_keys`).

What cannot be stored is refused per row with :class:`~fanout.model.sink_keys.UnrepresentableRow`
(an item above DynamoDB's 400 KB, a column the mapping did not expect that collides with a reserved name, a JSON
object key that is empty, ...). The sink raises it as RowRejected; the fetcher records such a row in the
dead-letter queue and still writes the other sink; it does not retry it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from fanout.model.change import Change
from fanout.model.composition import EmbeddedList, EmbeddedRow, OverLimit
from fanout.model.mapping import TableMapping
from fanout.model.sink_keys import UnrepresentableRow
from fanout.source.rows import JsonText, RowState


class Outcome(StrEnum):
    """What a sink did with one row state. STALE is normal: a newer state is already there."""

    WRITTEN = "written"
    DELETED = "deleted"
    STALE = "stale"
    REJECTED = "rejected"  # reported by the fetcher for a RowRejected; never returned by a sink


class SinkError(RuntimeError):
    """A sink could not take a write now; the change must be retried."""


class RowRejected(Exception):
    """This row state can never be written to this sink as it is (too large, unrepresentable, refused
    as invalid); retrying cannot help. The fetcher records it in the dead-letter queue, with the change
    so that it can be replayed once the mapping or the sink is fixed, and still writes the other sinks."""


class Sink(Protocol):
    """What the fetcher calls on a sink (fanout.pipeline.fetcher)."""

    name: str

    def enabled_for(self, mapping: TableMapping) -> bool: ...

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        """One row state, written (or found stale); raises RowRejected or SinkError."""
        ...

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """Rows of one table together; per row, in order, its Outcome or its exception (RowRejected: never
        writable; anything else: retried), so one row failing spares the others. :func:`apply_each` is the
        per-row form, for a sink with no batch request."""
        ...


def apply_each(
    sink: Sink, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]
) -> list[Outcome | Exception]:
    """``apply_batch`` for a sink that writes row by row: each row's ``apply``, one failing sparing the others."""
    outcomes: list[Outcome | Exception] = []
    for change, state in items:
        try:
            outcomes.append(sink.apply(mapping, change, state))
        except Exception as exc:  # noqa: BLE001 - reported per row to the fetcher, which decides
            outcomes.append(exc)
    return outcomes


# --------------------------------------------------------------------------- values both sinks store alike


def temporal_text(value: dt.date | dt.timedelta) -> str:
    """DATE, DATETIME, TIMESTAMP or TIME as the text both sinks store (note (3) above)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat()
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    micros = abs(int(round(total * 1_000_000)))
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}" + (f".{micro:06d}" if micro else "")


def _no_constant(name: str) -> Any:
    raise UnrepresentableRow(f"a JSON column holds {name}, which is not JSON (nor storable in either sink)")


def parsed_json(value: JsonText) -> Any:
    """A JSON column's value, numbers as Decimal (a JSON number keeps its digits); UnrepresentableRow if
    the text is not JSON (NaN and Infinity included: neither sink can hold them)."""
    try:
        return json.loads(value.text, parse_constant=_no_constant, parse_float=Decimal)
    except UnrepresentableRow:
        raise
    except ValueError as exc:
        raise UnrepresentableRow(f"a JSON column holds text that is not JSON ({exc})") from None


Relation = EmbeddedRow | EmbeddedList | OverLimit  # a composed document's relations (fanout.source.composition_read)


def relation_value(value: Relation, convert: Any) -> Any:
    """A relation of a composed document: a parent as an object, a list of children or values, each value
    by the sink's ``convert``; UnrepresentableRow for a relation over its limit."""
    if isinstance(value, OverLimit):
        raise UnrepresentableRow(value.reason)
    if isinstance(value, EmbeddedRow):
        return {name: convert(item) for name, item in value.items()}
    return [convert(item) for item in value]
