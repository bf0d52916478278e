"""The ring: the event that starts a drain, sent by the triggers (``lambda_async``), by a drainer out of time to its
successor and by the sweeper; recognised by the parser, its one event shape, and by ``fanout dlq redrive``.

Its format (``{"v": 2, "ring": "change_log", "table", "ts"}``) is in :mod:`fanout.capture.names`, which the trigger
generator shares; a ring carries no change: the drain it starts reads the change log (:mod:`fanout.capture.change_log`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fanout.capture.names import RING, RING_FORMAT_VERSION


def is_ring(event: Any) -> bool:
    """Whether an invoke is a trigger's ring (format version 2), the parser's one event shape."""
    return isinstance(event, dict) and event.get("v") == RING_FORMAT_VERSION and event.get("ring") == RING


def ring(lambda_client: Any, parser_function: str) -> None:
    """Ring the parser (an asynchronous invoke with a ring, the event the triggers send): a drain starts."""
    event = {"v": RING_FORMAT_VERSION, "ring": RING, "table": "", "ts": time.time()}
    response = lambda_client.invoke(
        FunctionName=parser_function, InvocationType="Event", Payload=json.dumps(event).encode("utf-8")
    )
    if response.get("StatusCode") != 202:
        raise RuntimeError(f"ring of {parser_function} answered {response.get('StatusCode')}, expected 202")
