"""The wire formats: a trigger's payload and the message the parser hands the fetcher, read into changes.

A trigger's payload is described in :mod:`fanout.model.change`; a table feeding composed documents sends one with
``refs`` (:mod:`fanout.model.composition_payload`). The message is what :meth:`fanout.model.change.Change.to_message`
writes; :func:`fetcher_event` wraps messages into the event the fetcher takes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fanout.model.change import (
    CORRELATION_ID,
    MAX_TIMESTAMP_US,
    WIRE_STAGES,
    Change,
    ChangeValidationError,
    KeyValue,
    Stage,
    common_fields,
    describe,
    field_name,
    validate_key,
    validate_timestamp,
)
from fanout.model.composition_payload import parse_related_payload, referenced_columns, validate_reference
from fanout.model.mapping import Mappings

MAX_PAYLOAD_BYTES = 8192  # a trigger payload names a key; anything bigger is not ours
_TRIGGER_FIELDS = frozenset({"v", "action", "table", "pk", "old_pk", "ts"})
_MESSAGE_FIELDS = frozenset({"v", "action", "table", "pk", "ts_us", "correlation_id", "via", "after", "t"})


def fetcher_event(changes: Sequence[Change]) -> dict[str, Any]:
    """The event the fetcher takes (a direct invoke, a fetch-queue message, a dead letter's replay)."""
    return {"changes": [change.to_message() for change in changes]}


def parse_trigger_payload(payload: Any, mappings: Mappings, correlation_id: str = "") -> list[Change]:
    """Validate a trigger payload; return the change(s) it stands for.

    An UPDATE that changed the primary key yields two changes: the new key and
    the old one (whose re-read will find nothing, and so delete it).
    """
    if isinstance(payload, (str, bytes)):
        size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)
        if size > MAX_PAYLOAD_BYTES:
            raise ChangeValidationError("<payload>", f"larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            payload = json.loads(payload)
        except UnicodeDecodeError:
            raise ChangeValidationError("<payload>", "is not UTF-8 text") from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge int literals, deep nesting
            detail = getattr(exc, "msg", type(exc).__name__)
            raise ChangeValidationError("<payload>", f"is not valid JSON ({detail})") from None
    if isinstance(payload, dict) and "refs" in payload:  # a table feeding composed documents
        return parse_related_payload(payload, mappings, correlation_id)
    payload, mapping, action = common_fields(payload, mappings)
    if not payload.keys() <= _TRIGGER_FIELDS:
        extra = sorted(set(payload) - _TRIGGER_FIELDS, key=str)
        raise ChangeValidationError(field_name(extra[0]), "unknown field", log_field="<unknown field>")
    key = validate_key(mapping, payload.get("pk"), "pk")
    changed_at = validate_timestamp(payload.get("ts"), "ts")
    changes = [Change(mapping.table, key, action, changed_at, correlation_id)]
    old = payload.get("old_pk")
    if old is not None:
        if action != "update":
            raise ChangeValidationError("old_pk", f"only an update can carry old_pk, not {action!r}")
        old_key = validate_key(mapping, old, "old_pk")
        if old_key != key:
            changes.append(Change(mapping.table, old_key, "update", changed_at, correlation_id))
    return changes


def parse_change_message(message: Any, mappings: Mappings) -> Change:
    """Validate a change handed from the parser to the fetcher (see :meth:`Change.to_message`)."""
    message, mapping, action = common_fields(message, mappings)
    if not message.keys() <= _MESSAGE_FIELDS:
        extra = sorted(set(message) - _MESSAGE_FIELDS, key=str)
        raise ChangeValidationError(field_name(extra[0]), "unknown field", log_field="<unknown field>")
    via = message.get("via", "")
    if via:  # a change to a parent or link-target row of a composed document (fanout.model.composition_payload)
        columns = None
        if isinstance(via, str) and mapping.composition is not None:
            columns = referenced_columns(mapping.composition, via)
        if columns is None:
            raise ChangeValidationError("via", f"is not a parent or many-to-many relation of {mapping.table!r}")
        key = validate_reference(columns, message.get("pk"), "pk")
    else:
        key = validate_key(mapping, message.get("pk"), "pk")
    after: tuple[tuple[str, KeyValue], ...] = ()
    if "after" in message:  # a continuation's resume cursor: the last root key rebuilt (a root's key)
        if not via:
            raise ChangeValidationError("after", "only a change via a relation can carry a resume cursor")
        after = validate_key(mapping, message["after"], "after")
    ts = message.get("ts_us")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts < MAX_TIMESTAMP_US:
        raise ChangeValidationError("ts_us", "must be microseconds since the epoch", describe(ts))
    correlation_id = message.get("correlation_id", "")
    if not isinstance(correlation_id, str) or not CORRELATION_ID.fullmatch(correlation_id):
        raise ChangeValidationError(
            "correlation_id", "must be a string of at most 128 printable ASCII characters without spaces"
        )
    stages = _stage_times(message.get("t", {}))
    return Change(mapping.table, key, action, ts, correlation_id, via=via, after=after, stages=stages)


def _stage_times(raw: Any) -> tuple[tuple[Stage, int], ...]:
    """A message's ``t``: the times it passed each stage (:class:`fanout.model.change.Stage`), epoch microseconds.

    Informational only (they feed the lag breakdown, never a decision): a time that is not ours (an unknown
    stage, a value that is no timestamp, a ``t`` that is no object) is left out, and never costs the change."""
    if not isinstance(raw, dict):
        return ()
    return tuple(
        (Stage(name), at)
        for name, at in raw.items()
        if name in WIRE_STAGES and not isinstance(at, bool) and isinstance(at, int) and 0 < at < MAX_TIMESTAMP_US
    )
