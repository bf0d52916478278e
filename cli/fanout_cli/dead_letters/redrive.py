"""Redrive: replay dead letters through the path they came from, and say what became of each.

Synchronously, so that the outcome is known at once; every sink write is
version-gated, so a replay of something already applied is a no-op:

- a rejected record is validated again with the current table mapping; if it
  is now valid, its changes go to the fetcher (a change-log row the parser
  rejected, a change message the fetcher rejected); otherwise it stays, with
  the reason;
- a failed ring is re-invoked on the parser; a queued change (or a failed
  invoke of the fetcher) is invoked on the fetcher with its body.

The fetcher takes one event shape, an SQS batch: its redrive is a batch of one
record (the letter), and a record it names in ``batchItemFailures`` failed again.

What fails again stays in the queue: the record is sent again, unchanged, with
message attributes saying how often it was redriven and the last error
(``fanout-redrive-count``, ``fanout-redrive-error``, ``fanout-first-sent-at``),
and the previous copy is deleted. What succeeds is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fanout.capture.ring import is_ring
from fanout.model.change import ChangeValidationError
from fanout.model.mapping import Mappings
from fanout.model.payloads import fetcher_event, parse_change_message, parse_trigger_payload
from fanout_cli.dead_letters.invoke import Invoke, InvokeResult
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.dead_letters.records import MAX_ERROR_CHARS, DeadLetter, Kind
from fanout_cli.stack_resources import StackResources

REDRIVE_CORRELATION_ID = "redrive"  # the changes of a redriven change-log row are logged under it


class RedriveOutcome(StrEnum):
    """What a redrive did with one letter (not a sink write's outcome: that is ``fanout.sinks.Outcome``)."""

    REPLAYED = "replayed"  # re-submitted and accepted; deleted from the queue
    REJECTED_AGAIN = "rejected-again"  # the deployed function rejected it and recorded a new dead letter
    KEPT = "kept"  # failed again or cannot be replayed; left in the queue with the reason
    WOULD_REPLAY = "would-replay"  # --dry-run
    WOULD_KEEP = "would-keep"  # --dry-run


@dataclass
class RedriveResult:
    letter: DeadLetter
    outcome: RedriveOutcome
    detail: str = ""
    function: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.letter.message_id,
            "kind": self.letter.kind.value,
            "source": self.letter.source,
            "tables": list(self.letter.tables),
            "outcome": self.outcome.value,
            "function": self.function,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Plan:
    """What a redrive of one letter would do: invoke ``function_role`` with ``payload``, or keep it (``reason``)."""

    function_role: str = ""
    payload: Any = None
    reason: str = ""


def fetch_batch(message_id: str, body: Any) -> dict[str, Any]:
    """The fetcher's one event shape for a redrive: an SQS batch whose one record carries ``body``."""
    return {"Records": [{"messageId": message_id, "body": json.dumps(body), "eventSource": "fanout:redrive"}]}


def plan_redrive(letter: DeadLetter, mappings: Mappings) -> Plan:
    if letter.kind is Kind.UNKNOWN:
        return Plan(reason="not a fanout dead-letter record; inspect it with `fanout dlq show`")
    if letter.source not in ("parser", "fetcher"):
        return Plan(reason=f"{letter.function or letter.source!r} is not this stack's parser or fetcher")
    if letter.source == "parser" and is_ring(letter.payload):  # a failed ring: the log rows wait for it
        return Plan(function_role="parser", payload=letter.payload)
    if letter.source == "fetcher" and letter.kind in (Kind.FAILED_INVOKE, Kind.QUEUED_CHANGE):
        if isinstance(letter.payload, dict) and "Records" in letter.payload:  # a failed invoke with a batch
            return Plan(function_role="fetcher", payload=letter.payload)
        return Plan(function_role="fetcher", payload=fetch_batch(letter.message_id, letter.payload))
    if letter.payload_truncated:
        return Plan(reason="the payload was truncated when it was recorded; it cannot be replayed")
    try:
        if letter.source == "parser":  # a change-log row (or a retired per-row payload): its changes
            changes = parse_trigger_payload(letter.payload, mappings, REDRIVE_CORRELATION_ID)
            return Plan(function_role="fetcher", payload=fetch_batch(letter.message_id, fetcher_event(changes)))
        parse_change_message(letter.payload, mappings)
        return Plan(function_role="fetcher", payload=fetch_batch(letter.message_id, {"changes": [letter.payload]}))
    except ChangeValidationError as exc:
        return Plan(reason=f"still invalid: {exc}")


def _failed_again(answer: Any) -> bool:
    """Whether the fetcher's answer names a record to retry (the parser's answer names none)."""
    return isinstance(answer, dict) and bool(answer.get("batchItemFailures"))


def _rejected_count(answer: Any) -> int:
    rejected = answer.get("rejected", 0) if isinstance(answer, dict) else 0
    return rejected if isinstance(rejected, int) else 0


def redrive(
    letters: Sequence[DeadLetter],
    queue: DeadLetterQueue,
    invoke: Invoke,
    mappings: Mappings,
    resources: StackResources,
    *,
    dry_run: bool = False,
) -> list[RedriveResult]:
    """Replay each letter (see the module docstring); the queue ends holding only what failed again."""
    results: list[RedriveResult] = []
    for letter in letters:
        plan = plan_redrive(letter, mappings)
        function = resources.function_for(plan.function_role) if plan.function_role else ""
        if dry_run:
            outcome = RedriveOutcome.WOULD_REPLAY if plan.function_role else RedriveOutcome.WOULD_KEEP
            results.append(RedriveResult(letter, outcome, plan.reason, function))
            continue
        if not plan.function_role:
            queue.keep_with_error(letter, plan.reason)
            results.append(RedriveResult(letter, RedriveOutcome.KEPT, plan.reason))
            continue
        try:
            result = invoke(function, plan.payload)
        except Exception as exc:  # noqa: BLE001 - the invoke itself failed: keep the letter, say why
            result = InvokeResult(False, None, f"invoke failed: {exc}"[:MAX_ERROR_CHARS])
        if result.ok and _failed_again(result.response):
            failures = "; ".join(str(f) for f in result.response.get("failures", []))
            error = f"the fetcher failed it again: {failures or 'see its logs'}"[:MAX_ERROR_CHARS]
            result = InvokeResult(False, result.response, error)
        if not result.ok:
            queue.keep_with_error(letter, result.error)
            results.append(RedriveResult(letter, RedriveOutcome.KEPT, result.error, function))
        elif _rejected_count(result.response):
            queue.delete(letter)  # the function recorded a fresh dead letter with its current reason
            detail = str(result.response.get("reason", "")) if isinstance(result.response, dict) else ""
            results.append(RedriveResult(letter, RedriveOutcome.REJECTED_AGAIN, detail, function))
        else:
            queue.delete(letter)
            results.append(RedriveResult(letter, RedriveOutcome.REPLAYED, "", function))
    return results
