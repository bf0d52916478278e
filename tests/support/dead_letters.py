"""Sample dead letters: Lambda's on-failure records (as AWS documents them, and as ministack sends them),
a rejection record, and the SQS message around each, as the dead-letter queue hands them out."""

from __future__ import annotations

from typing import Any

from fanout.pipeline.rejects import message_body, rejection_record
from fanout_cli.dead_letters.records import DeadLetter, parse_dead_letter
from fanout_cli.stack_resources import StackResources
from tests.support.fakes import load_record_body

RESOURCES = StackResources(
    dead_letter_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/fanout-dlq",
    parser_function_name="fanout-prod-parser",
    fetcher_function_name="fanout-prod-fetcher",
    parser_log_group="/fanout/prod/fanout-prod/parser",
    fetcher_log_group="/fanout/prod/fanout-prod/fetcher",
)
FETCHER_EVENT = load_record_body("fetcher_update.json")  # a fetch-queue message: a dead letter's payload
SENT_MS = 1764240000000

# Lambda's on-failure destination record as AWS documents it (Lambda developer guide, "Capturing
# records of Lambda asynchronous invocations"): a qualified ARN, version, timestamp, requestId.
AWS_RECORD = {
    "version": "1.0",
    "timestamp": "2026-11-14T18:16:05.568Z",
    "requestContext": {
        "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:fanout-prod-fetcher:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": FETCHER_EVENT,
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
    "responsePayload": {"errorMessage": "posts/1: opensearch failed: refused", "errorType": "FetchFailed"},
}
# What ministack 1.5.33 sends instead (seen on the local stack): no version, timestamp, requestId
# or executedVersion, and an unqualified ARN.
MINISTACK_RECORD = {
    "requestContext": {
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:fanout-prod-fetcher",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": FETCHER_EVENT,
    "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
    "responsePayload": {"errorMessage": "posts/1: opensearch failed: refused", "errorType": "Runtime.HandlerError"},
}


def sqs_message(body: str, message_id: str = "m-1", attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {"SentTimestamp": str(SENT_MS), "ApproximateReceiveCount": "1"},
        "MessageAttributes": attributes or {},
    }


def rejected(
    source: str, payload: Any, reason: str = "pk.id: must be an integer", message_id: str = "m-1"
) -> DeadLetter:
    body = message_body(rejection_record(source, reason, payload, "req-rejected"))
    attributes = {"fanout-rejected-by": {"DataType": "String", "StringValue": source}}
    return parse_dead_letter(sqs_message(body, message_id, attributes), RESOURCES)
