"""The DynamoDB sink's transactions serialised in one ``json.dumps``, not by botocore's walk of the service model.

botocore serialises a call by walking its parameters along the service model, one Python call per structure,
map and attribute value (and, for TransactWriteItems, evaluates a JMESPath over every item to find the tables
its endpoint rules read). The sink's requests are already in DynamoDB's wire form (attribute values, built once
per item: :mod:`fanout.sinks.dynamodb`), so the walk only copies them: it was a fifth of the fetcher's CPU per
change (bench/results/fetcher_profile.txt). :func:`send_transactions_as_built` hooks two of the client's
documented events (botocore's event system, as boto3's extensibility guide describes it) for TransactWriteItems:

- ``before-parameter-build``: the call's parameters are serialised here, as botocore would write them (a
  binary as base64, the idempotency token it adds), and botocore is handed one placeholder Put per table the
  items name: what its endpoint rules read (``ResourceArnList``), so the endpoint is resolved for the same tables;
- ``before-call``: the serialised parameters replace the placeholder's body, before the request is signed,
  sent, and re-sent by botocore's retries.

What DynamoDB receives is the same JSON botocore writes (tests/unit/test_dynamodb_wire.py compares the two).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

OPERATION = "dynamodb.TransactWriteItems"
PROTOCOL = "json"  # botocore's name for the protocol whose body serialized_parameters writes
BODY = "fanout_serialized_body"  # the request context's key between the two events
_KINDS = ("ConditionCheck", "Put", "Delete", "Update")


def serialized_parameters(params: dict[str, Any]) -> bytes:
    """The call's parameters as the body botocore's JSON protocol writes (binaries base64, UTF-8)."""
    return json.dumps(params, separators=(",", ":"), default=_binary).encode("utf-8")


def _binary(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"no DynamoDB wire form for a value of type {type(value).__name__}")


def placeholder_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One empty Put per table the items name, in first-seen order: what botocore's endpoint rules read."""
    tables = dict.fromkeys(
        operation["TableName"] for item in items for kind in _KINDS if (operation := item.get(kind)) is not None
    )
    return [{"Put": {"TableName": table, "Item": {}}} for table in tables]


def _serialize_here(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    items = params.get("TransactItems")
    if not items:
        return
    # The idempotency token (ClientRequestToken) botocore adds to a call that has none (its handler of this event,
    # botocore.handlers.generate_idempotent_uuid, runs after this one), added here the same way: a retried call
    # carries the same token
    for name in model.idempotent_members:
        params.setdefault(name, str(uuid.uuid4()))
    context[BODY] = serialized_parameters(params)
    params["TransactItems"] = placeholder_items(items)


def _send_serialized(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    body = context.pop(BODY, None)
    if body is not None:
        params["body"] = body


def send_transactions_as_built(client: Any) -> None:
    """Have ``client`` (botocore's low-level DynamoDB client) send TransactWriteItems parameters serialised in one
    ``json.dumps``; registering twice is registering once. Only a client that speaks DynamoDB's JSON protocol
    (``awsJson1_0``): should a botocore release move the service to another wire protocol, its own serialiser is
    left alone, so the bytes never disagree with the content type."""
    if client.meta.service_model.protocol != PROTOCOL:
        return
    events = client.meta.events
    events.register(f"before-parameter-build.{OPERATION}", _serialize_here, unique_id="fanout-serialize-here")
    events.register(f"before-call.{OPERATION}", _send_serialized, unique_id="fanout-send-serialized")
