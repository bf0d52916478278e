"""Dead letters: what the dead-letter queue holds, and replaying it through the normal path.

The queue receives three kinds of record:

**Rejected input** (``fanout.pipeline.rejects``), written by the parser or the fetcher::

    {"fanout_rejected": true, "rejected_by": "parser", "reason": "pk.id: ...",
     "correlation_id": "...", "payload": "<the input, as JSON text>", "payload_truncated": false}

**Failed asynchronous invokes**, written by Lambda's on-failure destination
(``EventInvokeConfig``) once its retries are spent. AWS documents this record::

    {"version": "1.0", "timestamp": "2019-11-14T18:16:05.568Z",
     "requestContext": {"requestId": "e4b4...", "functionArn": "arn:...:function:name:$LATEST",
                        "condition": "RetriesExhausted", "approximateInvokeCount": 3},
     "requestPayload": {...the event...},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "responsePayload": {"errorMessage": "...", "errorType": "...", "stackTrace": [...]}}

ministack 1.5.33 (the local stack) sends a smaller record: no ``version``,
``timestamp``, ``requestContext.requestId`` or ``responseContext.executedVersion``;
``functionArn`` without the ``:$LATEST`` qualifier; ``approximateInvokeCount``
always 3. So nothing here requires those fields: a record is a failed invoke
when it has ``requestContext.functionArn`` and ``requestPayload``, and the time
comes from the queue's ``SentTimestamp`` (both send it).

**Queued changes** the fetch queue gave up on (FetchMode=queued: its redrive
policy moves a message here after ``maxReceiveCount`` receives): the message
itself, a fetcher event with one change (``fanout.pipeline.handoff``)::

    {"changes": [{"v": 1, "action": "update", "table": "posts", "pk": {"id": 42}, ...}]}

**Redrive** replays a record through the path it came from, synchronously so
that the outcome is known at once; every sink write is version-gated, so a
replay of something already applied is a no-op:

- a rejected record is validated again with the current table mapping; if it
  is now valid, its payload is submitted to the function that rejected it
  (a trigger payload to the parser; a change message to the fetcher);
  otherwise it stays, with the reason;
- a failed invoke is re-invoked on the function that failed, with the original
  request payload; a queued change is invoked on the fetcher with its body.

What fails again stays in the queue: the record is sent again, unchanged, with
message attributes saying how often it was redriven and the last error
(``fanout-redrive-count``, ``fanout-redrive-error``, ``fanout-first-sent-at``),
and the previous copy is deleted. What succeeds is deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fanout.model.change import ChangeValidationError, parse_change_message, parse_trigger_payload
from fanout.model.mapping import Mappings
from fanout.operations.stack_resources import StackResources

REDRIVE_COUNT = "fanout-redrive-count"
REDRIVE_ERROR = "fanout-redrive-error"
FIRST_SENT_AT = "fanout-first-sent-at"  # epoch milliseconds of the first time the record was queued
REJECTED_BY = "fanout-rejected-by"
MAX_ERROR_CHARS = 1000


class Kind(StrEnum):
    REJECTED = "rejected"
    FAILED_INVOKE = "failed-invoke"
    QUEUED_CHANGE = "queued-change"
    UNKNOWN = "unknown"


@dataclass
class DeadLetter:
    """One message of the dead-letter queue, understood."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, dict[str, Any]]
    sent_at_ms: int  # when it was first queued (kept across redrives)
    receive_count: int
    kind: Kind
    source: str  # parser / fetcher (the function that rejected or failed), "" if not one of the stack's
    function: str  # for a failed invoke, the function ARN in the record
    tables: tuple[str, ...]
    reason: str
    correlation_id: str
    payload: Any  # what a redrive submits (decoded), None when it cannot be replayed
    payload_truncated: bool = False
    redrive_count: int = 0
    last_redrive_error: str = ""

    def age_seconds(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.sent_at_ms / 1000)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "kind": self.kind.value,
            "source": self.source,
            "tables": list(self.tables),
            "reason": self.reason,
            "correlation_id": self.correlation_id,
            "sent_at": _iso(self.sent_at_ms),
            "age_seconds": round(self.age_seconds(now), 1),
            "receive_count": self.receive_count,
            "redrive_count": self.redrive_count,
            "last_redrive_error": self.last_redrive_error,
        }

    def detail(self) -> dict[str, Any]:
        try:
            record: Any = json.loads(self.body)
        except ValueError:
            record = self.body
        return {**self.summary(), "function": self.function, "record": record}


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms / 1000)) + f".{epoch_ms % 1000:03d}Z"


def _string_attribute(attributes: dict[str, dict[str, Any]], name: str) -> str:
    value = attributes.get(name, {}).get("StringValue", "")
    return value if isinstance(value, str) else ""


def _tables_of(payload: Any) -> tuple[str, ...]:
    """Tables a trigger payload, change message or fetcher event names (as given; for display and filters)."""
    if isinstance(payload, dict) and isinstance(payload.get("changes"), list):
        names = [c.get("table") for c in payload["changes"] if isinstance(c, dict)]
    elif isinstance(payload, dict):
        names = [payload.get("table")]
    else:
        names = []
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str)))


def _error_of(record: dict[str, Any]) -> str:
    context = record.get("requestContext") or {}
    response = record.get("responsePayload")
    parts = [str(context.get("condition", "")).strip()]
    if isinstance(response, dict):
        error_type, message = response.get("errorType", ""), response.get("errorMessage", "")
        parts.append(f"{error_type}: {message}" if error_type else str(message))
    elif response:
        parts.append(str(response))
    else:
        function_error = (record.get("responseContext") or {}).get("functionError")
        if function_error:
            parts.append(str(function_error))
    return ": ".join(p for p in parts if p)[:MAX_ERROR_CHARS]


def parse_dead_letter(message: dict[str, Any], resources: StackResources) -> DeadLetter:
    """A queue message (as ``ReceiveMessage`` returns it, with all attributes) as a :class:`DeadLetter`."""
    body = str(message.get("Body", ""))
    attributes: dict[str, dict[str, Any]] = message.get("MessageAttributes") or {}
    system = message.get("Attributes") or {}
    first_sent = _string_attribute(attributes, FIRST_SENT_AT)
    sent_at_ms = int(first_sent) if first_sent.isdigit() else int(system.get("SentTimestamp", "0") or 0)
    count = _string_attribute(attributes, REDRIVE_COUNT)
    letter = DeadLetter(
        message_id=str(message.get("MessageId", "")),
        receipt_handle=str(message.get("ReceiptHandle", "")),
        body=body,
        attributes=attributes,
        sent_at_ms=sent_at_ms,
        receive_count=int(system.get("ApproximateReceiveCount", "0") or 0),
        kind=Kind.UNKNOWN,
        source="",
        function="",
        tables=(),
        reason="not a fanout dead-letter record",
        correlation_id="",
        payload=None,
        redrive_count=int(count) if count.isdigit() else 0,
        last_redrive_error=_string_attribute(attributes, REDRIVE_ERROR),
    )
    try:
        record = json.loads(body)
    except ValueError:
        return letter
    if not isinstance(record, dict):
        return letter
    if record.get("fanout_rejected") is True:
        letter.kind = Kind.REJECTED
        letter.source = str(record.get("rejected_by", ""))
        letter.reason = str(record.get("reason", ""))
        letter.correlation_id = str(record.get("correlation_id", ""))
        letter.payload_truncated = bool(record.get("payload_truncated"))
        raw = record.get("payload")
        try:
            letter.payload = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            letter.payload = raw  # recorded as text that is not JSON; it can only be re-rejected
        letter.tables = _tables_of(letter.payload)
        return letter
    context = record.get("requestContext")
    if isinstance(context, dict) and context.get("functionArn") and "requestPayload" in record:
        letter.kind = Kind.FAILED_INVOKE
        letter.function = str(context["functionArn"])
        letter.source = resources.role_of(letter.function)
        letter.payload = record["requestPayload"]
        letter.tables = _tables_of(letter.payload)
        letter.reason = _error_of(record)
        letter.correlation_id = str(context.get("requestId", ""))
        changes = letter.payload.get("changes") if isinstance(letter.payload, dict) else None
        if isinstance(changes, list) and changes and isinstance(changes[0], dict):
            letter.correlation_id = str(changes[0].get("correlation_id", "")) or letter.correlation_id
        return letter
    changes = record.get("changes")
    if isinstance(changes, list) and changes and all(isinstance(c, dict) for c in changes):
        letter.kind = Kind.QUEUED_CHANGE
        letter.source = "fetcher"
        letter.payload = record
        letter.tables = _tables_of(record)
        letter.reason = "the fetch queue gave up on it after its maxReceiveCount receives (see the fetcher's logs)"
        letter.correlation_id = str(changes[0].get("correlation_id", ""))
    return letter


# --------------------------------------------------------------------------- selecting


@dataclass(frozen=True)
class Filter:
    tables: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # parser / fetcher
    kinds: tuple[Kind, ...] = ()
    ids: tuple[str, ...] = ()
    older_than_seconds: float | None = None
    newer_than_seconds: float | None = None

    def matches(self, letter: DeadLetter, now: float | None = None) -> bool:
        age = letter.age_seconds(now)
        return (
            (not self.tables or bool(set(self.tables) & set(letter.tables)))
            and (not self.sources or letter.source in self.sources)
            and (not self.kinds or letter.kind in self.kinds)
            and (not self.ids or letter.message_id in self.ids)
            and (self.older_than_seconds is None or age >= self.older_than_seconds)
            and (self.newer_than_seconds is None or age <= self.newer_than_seconds)
        )


# --------------------------------------------------------------------------- the queue


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class DeadLetterQueue:
    """The SQS dead-letter queue, read without losing anything.

    Reading holds messages invisible (``hold_seconds``) so that one pass sees
    each message once; whatever is not deleted or re-sent is released again
    (visibility 0) by :meth:`release`, and would reappear by itself after
    ``hold_seconds`` if the process died.
    """

    def __init__(self, sqs: Any, queue_url: str, resources: StackResources) -> None:
        self._sqs = sqs
        self.url = queue_url
        self._resources = resources

    def depth(self) -> QueueDepth:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return QueueDepth(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def hold_all(self, hold_seconds: int = 60, limit: int = 1000) -> list[DeadLetter]:
        """Every visible message (up to ``limit``), held invisible for ``hold_seconds``."""
        letters: dict[str, DeadLetter] = {}
        while len(letters) < limit:
            response = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, limit - len(letters)),
                VisibilityTimeout=hold_seconds,
                WaitTimeSeconds=1,  # long polling asks every SQS server, so an empty answer means empty
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                letter = parse_dead_letter(message, self._resources)
                letters[letter.message_id] = letter
        return list(letters.values())

    def release(self, letters: Iterable[DeadLetter]) -> None:
        """Make held messages visible again at once."""
        for letter in letters:
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
                )
            except Exception:  # noqa: BLE001, S110 - it becomes visible by itself when the hold ends
                pass

    def delete(self, letter: DeadLetter) -> None:
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)

    def keep_with_error(self, letter: DeadLetter, error: str) -> None:
        """Leave the record in the queue with the error of this redrive beside it.

        The record is sent again, unchanged, with the redrive attributes, and
        only then is the previous copy deleted: a crash in between leaves a
        duplicate (harmless: replays are idempotent), never a loss.
        """
        attributes = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
            for name, value in letter.attributes.items()
            if name not in (REDRIVE_COUNT, REDRIVE_ERROR, FIRST_SENT_AT) and "StringValue" in value
        }
        attributes[REDRIVE_COUNT] = {"DataType": "Number", "StringValue": str(letter.redrive_count + 1)}
        attributes[REDRIVE_ERROR] = {"DataType": "String", "StringValue": (error or "failed")[:MAX_ERROR_CHARS]}
        attributes[FIRST_SENT_AT] = {"DataType": "Number", "StringValue": str(letter.sent_at_ms)}
        self._sqs.send_message(QueueUrl=self.url, MessageBody=letter.body, MessageAttributes=attributes)
        self.delete(letter)


# --------------------------------------------------------------------------- redrive


@dataclass(frozen=True)
class InvokeResult:
    ok: bool
    response: Any  # the function's answer (decoded JSON) or its error payload
    error: str = ""


Invoke = Callable[[str, Any], InvokeResult]


def lambda_invoker(lambda_client: Any) -> Invoke:
    """A synchronous (RequestResponse) invoke: the outcome is known when it returns."""

    def invoke(function_name: str, payload: Any) -> InvokeResult:
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode("utf-8"),
        )
        raw = response["Payload"].read()
        try:
            answer: Any = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode("utf-8", "replace")
        if response.get("FunctionError"):
            if isinstance(answer, dict):
                error = f"{answer.get('errorType', response['FunctionError'])}: {answer.get('errorMessage', '')}"
            else:
                error = f"{response['FunctionError']}: {answer}"
            return InvokeResult(False, answer, error[:MAX_ERROR_CHARS])
        return InvokeResult(True, answer)

    return invoke


class Outcome(StrEnum):
    REPLAYED = "replayed"  # re-submitted and accepted; deleted from the queue
    REJECTED_AGAIN = "rejected-again"  # the deployed function rejected it and recorded a new dead letter
    KEPT = "kept"  # failed again or cannot be replayed; left in the queue with the reason
    WOULD_REPLAY = "would-replay"  # --dry-run
    WOULD_KEEP = "would-keep"  # --dry-run


@dataclass
class RedriveResult:
    letter: DeadLetter
    outcome: Outcome
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


def plan_redrive(letter: DeadLetter, mappings: Mappings) -> Plan:
    if letter.kind is Kind.UNKNOWN:
        return Plan(reason="not a fanout dead-letter record; inspect it with `fanout dlq show`")
    if letter.source not in ("parser", "fetcher"):
        return Plan(reason=f"{letter.function or letter.source!r} is not this stack's parser or fetcher")
    if letter.kind in (Kind.FAILED_INVOKE, Kind.QUEUED_CHANGE):
        return Plan(function_role=letter.source, payload=letter.payload)
    if letter.payload_truncated:
        return Plan(reason="the payload was truncated when it was recorded; it cannot be replayed")
    try:
        if letter.source == "parser":
            parse_trigger_payload(letter.payload, mappings)
            return Plan(function_role="parser", payload=letter.payload)
        parse_change_message(letter.payload, mappings)
        return Plan(function_role="fetcher", payload={"changes": [letter.payload]})
    except ChangeValidationError as exc:
        return Plan(reason=f"still invalid: {exc}")


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
            outcome = Outcome.WOULD_REPLAY if plan.function_role else Outcome.WOULD_KEEP
            results.append(RedriveResult(letter, outcome, plan.reason, function))
            continue
        if not plan.function_role:
            queue.keep_with_error(letter, plan.reason)
            results.append(RedriveResult(letter, Outcome.KEPT, plan.reason))
            continue
        try:
            result = invoke(function, plan.payload)
        except Exception as exc:  # noqa: BLE001 - the invoke itself failed: keep the letter, say why
            result = InvokeResult(False, None, f"invoke failed: {exc}"[:MAX_ERROR_CHARS])
        if not result.ok:
            queue.keep_with_error(letter, result.error)
            results.append(RedriveResult(letter, Outcome.KEPT, result.error, function))
        elif _rejected_count(result.response):
            queue.delete(letter)  # the function recorded a fresh dead letter with its current reason
            detail = str(result.response.get("reason", "")) if isinstance(result.response, dict) else ""
            results.append(RedriveResult(letter, Outcome.REJECTED_AGAIN, detail, function))
        else:
            queue.delete(letter)
            results.append(RedriveResult(letter, Outcome.REPLAYED, "", function))
    return results
