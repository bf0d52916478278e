"""The change model: one row to re-read, and the validation of its key and time.

A trigger sends (format version 1)::

    {"v": 1, "action": "update", "table": "posts", "pk": {"id": 42},
     "old_pk": null, "ts": 1764240000.123456}

``ts`` is ``UNIX_TIMESTAMP(SYSDATE(6))``: seconds since the epoch with
microseconds, whatever the session time zone. ``old_pk`` is set by UPDATE
triggers when the primary key itself changed; the parser then emits a second
change for the old key (re-read, it is absent: a delete).

The payloads and messages themselves are read by :mod:`fanout.model.payloads` (the wire formats), a feeding
table's by :mod:`fanout.model.composition_payload`. Nothing in a payload is trusted for data: the fetcher
re-reads the row. The payload only names *which* row to re-read, so it is validated strictly against
the table mapping: known table, captured action, exactly the key columns, each
of its declared type and within bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any

from fanout.model.key_format import default_key_text
from fanout.model.mapping import ACTIONS, Mappings, TableMapping

FORMAT_VERSION = 1
MAX_STRING_KEY_LENGTH = 512
BIGINT_MIN, BIGINT_UNSIGNED_MAX = -(2**63), 2**64 - 1
MAX_TIMESTAMP_US = 2**53  # microseconds must stay exact in a double (OpenSearch)
MAX_TIMESTAMP_SECONDS = MAX_TIMESTAMP_US // 1_000_000

# What the pipeline itself puts there: Lambda request ids, "fallback:<row id>". It goes on every log line.
CORRELATION_ID = re.compile(r"[!-~]{0,128}")

KeyValue = int | str


class ChangeValidationError(ValueError):
    """A payload is not a valid change.

    ``field`` names the offending part and ``reason`` says what is wrong without
    quoting the payload: ``log_field`` (``field``, except for a field name the
    sender made up) and ``reason`` are what a log line carries. ``str()`` adds a
    short, escaped description of the offending value (``got``): that text goes
    only into the dead-letter record, beside the payload itself.
    """

    def __init__(self, field: str, reason: str, got: str | None = None, *, log_field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if got is None else f"{field}: {reason}, got {got}")
        self.field = field
        self.reason = reason
        self.log_field = log_field or field  # a field name the sender chose is not repeated in the logs


MAX_DESCRIBED_CHARS = 80


def describe(value: Any) -> str:
    """A short, printable description of a payload value (never unbounded, never a crash)."""
    if isinstance(value, dict):  # a container is described, not printed: its size and depth are the sender's
        return f"an object of {len(value)} field(s)"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, str):
        text = repr(value[: MAX_DESCRIBED_CHARS + 1])  # repr escapes controls, lone surrogates, bidi marks
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    else:
        text = repr(value)
    return text if len(text) <= MAX_DESCRIBED_CHARS else text[: MAX_DESCRIBED_CHARS - 3] + "..."


def _is_utf8_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def field_name(name: Any) -> str:
    """A payload's own field name, made safe to print (escaped, bounded): the sender chose it."""
    text = ascii(name) if not isinstance(name, str) else ascii(name)[1:-1]
    return text if len(text) <= 64 else text[:61] + "..."


class Stage(StrEnum):
    """The times a change passes on its way (epoch microseconds), beside its trigger time (``changed_at_us``,
    committed): when the parser that took it was rung, when the drainer claimed it, when it was handed to the
    fetch queue (these three travel in its message, ``t``), and when the fetcher took it from the queue. Each
    sink's acknowledgement is the fetcher's to add (fanout.pipeline.stage_times)."""

    RUNG = "rung"
    DRAINED = "drained"
    HANDED = "handed"
    FETCHED = "fetched"


WIRE_STAGES = frozenset({Stage.RUNG, Stage.DRAINED, Stage.HANDED})  # the stages a message carries


@dataclass(frozen=True)
class Change:
    """One row to re-read and replicate."""

    table: str
    key: tuple[tuple[str, KeyValue], ...]  # (column, value) in the mapping's key order
    action: str  # what the trigger saw; informational, the re-read decides
    changed_at_us: int  # trigger time, microseconds since the epoch (for lag)
    correlation_id: str = ""
    # A composed document's parent or link-target relation: ``key`` is that row's referenced columns,
    # and the fetcher resolves the roots it touches (fanout.model.composition_payload).
    via: str = ""
    # A change via a relation handed on as a continuation: its roots after this root key are still to be
    # rebuilt (empty: from the first; fanout.pipeline.related).
    after: tuple[tuple[str, KeyValue], ...] = ()
    # When it passed each Stage on its way (epoch microseconds); informational: two changes of one key that
    # passed at other times are the same change.
    stages: tuple[tuple[Stage, int], ...] = field(default=(), compare=False)

    def stamped(self, stage: Stage, at_us: int) -> Change:
        """This change, having passed ``stage`` at ``at_us`` (a stage passed before keeps its first time)."""
        for name, _ in self.stages:
            if name == stage:
                return self
        # A copy of the instance's fields (and of the key's cached views, the same key) with the stage added, set as
        # the frozen dataclass's own __init__ sets them, bypassing its checks: a change is stamped three times on
        # its way to the queue, and three more __init__ calls were a fifth of a drainer's hand-off
        # (bench/results/handoff.md).
        copy = object.__new__(Change)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields["stages"] = (*self.stages, (stage, at_us))
        return copy

    # Computed once per change (a change is immutable): the fetcher's logs, counts and both sinks read them
    # several times each, which was a tenth of its own CPU per change (bench/results/fetcher_profile.txt).
    @cached_property
    def key_values(self) -> tuple[KeyValue, ...]:
        return tuple(value for _, value in self.key)

    @cached_property
    def document_id(self) -> str:
        """Stable id of the row in the sinks: key values, percent-encoded, joined by '|'."""
        return document_id_of(self.key_values)

    def to_message(self) -> dict[str, Any]:
        """The form handed from the parser to the fetcher (same field names as the trigger's)."""
        message: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "action": self.action,
            "table": self.table,
            "pk": dict(self.key),
            "ts_us": self.changed_at_us,
            "correlation_id": self.correlation_id,
        }
        if self.via:
            message["via"] = self.via
        if self.after:
            message["after"] = dict(self.after)
        wire = {str(name): at for name, at in self.stages if name in WIRE_STAGES}
        if wire:
            message["t"] = wire
        return message


def document_id_of(values: tuple[KeyValue, ...]) -> str:
    return default_key_text(values)


def validate_key(mapping: TableMapping, raw: Any, field: str) -> tuple[tuple[str, KeyValue], ...]:
    if not isinstance(raw, dict):
        raise ChangeValidationError(field, "must be an object of key columns", describe(raw))
    expected = mapping.key_columns
    if set(raw) != set(expected):
        got = ", ".join(field_name(name) for name in sorted(raw, key=str)[:8]) + (" ..." if len(raw) > 8 else "")
        raise ChangeValidationError(
            field, f"must have exactly the key columns {list(expected)} of {mapping.table!r}", f"[{got}]"
        )
    values = [(c.column, key_value(raw[c.column], c.type, f"{field}.{c.column}")) for c in mapping.primary_key]
    # No bound on the encoded key here: an id longer than a sink takes is bounded by fanout.model.sink_keys.
    return tuple(values)


def key_value(value: Any, key_type: str, where: str) -> KeyValue:
    """One key (or referenced) column's value, of its declared type ("int" or "string") and within bounds."""
    if key_type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChangeValidationError(where, "must be an integer", describe(value))
        if not BIGINT_MIN <= value <= BIGINT_UNSIGNED_MAX:
            raise ChangeValidationError(where, "integer is out of the BIGINT range", describe(value))
        return value
    if not isinstance(value, str):
        raise ChangeValidationError(where, "must be a string", describe(value))
    if len(value) > MAX_STRING_KEY_LENGTH:
        raise ChangeValidationError(where, f"string key longer than {MAX_STRING_KEY_LENGTH} characters")
    if not _is_utf8_text(value):
        # A lone surrogate (JSON allows "\\ud800") names no row MySQL can store, and cannot be encoded.
        raise ChangeValidationError(where, "string key is not valid Unicode text (lone surrogate)")
    return value


def validate_timestamp(raw: Any, field: str) -> int:
    if type(raw) is float and 0 < raw < MAX_TIMESTAMP_SECONDS:  # what a trigger's JSON_OBJECT gives, read by json
        exact = _float_microseconds(raw)
        if exact is not None:
            return exact
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
        raise ChangeValidationError(field, "must be seconds since the epoch", describe(raw))
    try:
        # Through str so that a float such as 1764240000.123456 keeps its digits.
        seconds = Decimal(str(raw))
    except (InvalidOperation, ValueError, ArithmeticError):
        raise ChangeValidationError(field, "must be seconds since the epoch", describe(raw)) from None
    if not seconds.is_finite() or not 0 < seconds < MAX_TIMESTAMP_SECONDS:
        raise ChangeValidationError(field, "timestamp is out of range", describe(raw))
    return int(seconds * 1_000_000)


def _float_microseconds(seconds: float) -> int | None:
    """``int(Decimal(str(seconds)) * 1_000_000)`` for a positive float written without an exponent, from its digits
    (a Decimal a row was a tenth of its parse); None for any other form (the Decimal path reads it)."""
    whole, point, fraction = repr(seconds).partition(".")
    if not point or not whole.isdigit() or not fraction.isdigit():
        return None
    return int(whole) * 1_000_000 + int(fraction[:6].ljust(6, "0"))


def common_fields(payload: Any, mappings: Mappings) -> tuple[dict[str, Any], TableMapping, str]:
    if not isinstance(payload, dict):
        raise ChangeValidationError("<payload>", f"must be a JSON object, got {type(payload).__name__}")
    version = payload.get("v")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ChangeValidationError("v", f"unsupported format version (expected {FORMAT_VERSION})", describe(version))
    table = payload.get("table")
    if not isinstance(table, str):
        raise ChangeValidationError("table", "must be a string", describe(table))
    mapping = mappings.get(table)
    if mapping is None:
        raise ChangeValidationError("table", "is not a mapped table", describe(table))
    action = payload.get("action")
    if not isinstance(action, str) or action.lower() not in ACTIONS:
        raise ChangeValidationError("action", f"must be one of {list(ACTIONS)}", describe(action))
    action = action.lower()
    if action not in mapping.capture:
        raise ChangeValidationError("action", f"{action!r} is not captured for table {table!r}")
    return payload, mapping, action
