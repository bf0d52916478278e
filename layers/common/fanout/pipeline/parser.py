"""The parser's one event shape is a change-log ring (fanout.capture.ring); anything else is recorded.

A ring makes the invocation a drainer. Any other event (a per-row payload of the retired
triggers, a hand-made test event) can never become a ring by being retried: it is recorded in
the dead-letter queue with the reason and *not* raised, so `fanout dlq` shows it and nothing
is lost. (A per-row payload found there is redriven to the fetcher as its changes.)
"""

from __future__ import annotations

import logging
from typing import Any

from fanout.capture.names import RING, RING_FORMAT_VERSION
from fanout.observability import UNKNOWN_TABLE, ChangeMetric, log, record
from fanout.pipeline.rejects import Reject

NOT_A_RING = f'the parser takes only a change-log ring ({{"v": {RING_FORMAT_VERSION}, "ring": "{RING}", ...}})'


def reject_event(event: Any, reject: Reject, correlation_id: str) -> dict[str, Any]:
    """Record an event that is not a ring, once; the answer says so (``rejected``)."""
    log(logging.WARNING, "event rejected", correlation_id=correlation_id, reason=NOT_A_RING)
    reject(NOT_A_RING, event, correlation_id)
    record(ChangeMetric.REJECTED, UNKNOWN_TABLE)
    return {"accepted": 0, "rejected": 1, "reason": NOT_A_RING}
