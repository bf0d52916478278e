"""Parser handler: receives what a trigger's lambda_async sent, hands valid changes to the fetcher.

Domain logic lives in the layer (fanout.parser); this page wires it to AWS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fanout.config import ParserSettings
from fanout.mapping import default_mappings
from fanout.observability import instrumented_handler
from fanout.parser import Forward, LambdaForwarder, handle_trigger_payload
from fanout.rejects import QueueRejectRecorder


@lru_cache(maxsize=1)
def _dependencies() -> tuple[Forward, QueueRejectRecorder]:
    """Built on the first invocation and reused (checked config, pooled clients)."""
    import boto3

    settings = ParserSettings.from_env()
    default_mappings()  # validate the mapping at cold start, failing loudly
    sqs = boto3.client("sqs")
    forward: Forward
    if settings.fetch_mode == "queued":  # FetchMode=queued: batches for the fetcher (fanout.fetch_queue)
        from fanout.fetch_queue import QueueForwarder

        forward = QueueForwarder(sqs, settings.fetch_queue_url)
    else:
        forward = LambdaForwarder(boto3.client("lambda"), settings.fetcher_function_name)
    return forward, QueueRejectRecorder(sqs, settings.dead_letter_queue_url, source="parser")


def _correlation_id(event: Any, context: Any) -> str:
    """A change is known by the request id of the parser invocation that received it."""
    return str(context.aws_request_id)


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    forward, reject = _dependencies()
    result = handle_trigger_payload(event, default_mappings(), forward, reject, context.aws_request_id)
    return result.as_dict()
