"""Parser logic: validate a trigger payload and hand the change(s) to the fetcher.

A valid payload becomes one asynchronous invoke of the fetcher (Lambda retries
it and, on final failure, sends it to the dead-letter queue). An invalid one is
recorded in the dead-letter queue with its reason and *not* raised: retrying
input that can never be valid would only delay the record of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fanout.model.change import Change, ChangeValidationError, parse_trigger_payload
from fanout.model.mapping import Mappings
from fanout.observability import ChangeMetric, log, metric_table, record, traced

Forward = Callable[[Sequence[Change]], None]
DIRECT_CHANGES_PER_INVOKE = 100
Reject = Callable[[str, Any, str], None]


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


def fetcher_event(changes: Sequence[Change]) -> dict[str, Any]:
    """The event the fetcher receives: a batch of change messages."""
    return {"changes": [c.to_message() for c in changes]}


class LambdaForwarder:
    """Hands changes to the fetcher function with an asynchronous (Event) invoke."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._lambda = lambda_client
        self._function_name = function_name

    def __call__(self, changes: Sequence[Change]) -> None:
        # A drained batch may hold hundreds of changes; an async invoke takes at most 256 KB, and a change
        # message with the longest keys is about 1.2 KB.
        for start in range(0, len(changes), DIRECT_CHANGES_PER_INVOKE):
            chunk = changes[start : start + DIRECT_CHANGES_PER_INVOKE]
            response = self._lambda.invoke(
                FunctionName=self._function_name,
                InvocationType="Event",
                Payload=json.dumps(fetcher_event(chunk)).encode("utf-8"),
            )
            status = response.get("StatusCode")
            if status != 202:
                raise RuntimeError(f"async invoke of {self._function_name} answered {status}, expected 202")
