"""Parser logic for a per-row trigger payload (format version 1): validate it and hand the change(s) on.

A valid payload is handed to the fetcher by a forwarder (fanout.pipeline.handoff); a failing
hand-off is raised, so Lambda retries the payload and, on final failure, dead-letters it. An
invalid one is recorded in the dead-letter queue with its reason and *not* raised: retrying
input that can never be valid would only delay the record of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fanout.model.change import ChangeValidationError
from fanout.model.mapping import Mappings
from fanout.model.payloads import parse_trigger_payload
from fanout.observability import ChangeMetric, log, metric_table, record, traced
from fanout.pipeline.handoff import Forward
from fanout.pipeline.rejects import Reject


@dataclass(frozen=True)
class ParseResult:
    accepted: int
    rejected: int
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "reason": self.reason}


def handle_trigger_payload(
    payload: Any, mappings: Mappings, forward: Forward, reject: Reject, correlation_id: str
) -> ParseResult:
    try:
        changes = parse_trigger_payload(payload, mappings, correlation_id)
    except ChangeValidationError as exc:
        table = metric_table(payload, mappings)
        log(
            logging.WARNING,
            "change rejected",
            correlation_id=correlation_id,
            table=table,
            field=exc.log_field,
            reason=exc.reason,
        )
        reject(str(exc), payload, correlation_id)
        record(ChangeMetric.REJECTED, table)
        return ParseResult(accepted=0, rejected=1, reason=str(exc))
    if not changes:  # valid, and names no document: e.g. a comment whose article_id is NULL
        log(logging.INFO, "change names no document", correlation_id=correlation_id,
            table=metric_table(payload, mappings))  # fmt: skip
        return ParseResult(accepted=0, rejected=0)
    with traced("forward", table=changes[0].table, correlation_id=correlation_id):
        forward(changes)
    for change in changes:
        record(ChangeMetric.RECEIVED, change.table)
        log(
            logging.INFO,
            "change accepted",
            correlation_id=correlation_id,
            table=change.table,
            key=change.document_id,
            action=change.action,
        )
    return ParseResult(accepted=len(changes), rejected=0)
