"""The DynamoDB sink's transactions, serialised by the sink: what leaves a real botocore client is what botocore
itself would have sent. No network: each request is answered at botocore's ``before-send`` event."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import boto3
from botocore.awsrequest import AWSResponse

from fanout.pipeline.wiring import aws_config
from fanout.sinks.dynamodb import attribute_values
from fanout.sinks.dynamodb_wire import placeholder_items, send_transactions_as_built


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


class Answering:
    """Answers each request a client would send with the next (status, body), keeping what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.sent.append((request.url, bytes(request.body)))
        status, body = self.answers.pop(0) if self.answers else (200, {})
        return AWSResponse(request.url, status, {}, _Raw(json.dumps(body).encode()))


def client(answering: Answering, *, as_built: bool) -> Any:
    made = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=aws_config(),
    )
    if as_built:
        send_transactions_as_built(made)
    made.meta.events.register("before-send.dynamodb", answering)
    return made


def put(table: str, key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": attribute_values({"pk": key, **item}),
            "ConditionExpression": "attribute_not_exists(#pk) OR #version < :version",
            "ExpressionAttributeNames": {"#pk": "pk", "#version": "_version"},
            "ExpressionAttributeValues": {":version": {"N": "7"}},
        }
    }


ITEMS = [
    put(
        "replica",
        "posts#1",
        {
            "title": 'Grüße, 世界 "quoted" \\ \n',
            "_version": Decimal("1764240000000001"),
            "score": Decimal("-12.50"),
            "flag": True,
            "gone": None,
            "blob": b"\x00\xffbinary",
            "tags": ["a", Decimal(2), {"nested": [b"\x01"]}],
        },
    ),
    put("replica", "posts#2", {"title": "second"}),
    put("other", "posts#3", {"title": "another table"}),
]


def test_the_body_sent_is_the_one_botocore_would_have_serialised() -> None:
    # Given the same transaction sent by a plain client and by one sending it as the sink built it
    plain, as_built = Answering(), Answering()
    client(plain, as_built=False).transact_write_items(TransactItems=ITEMS, ReturnConsumedCapacity="TOTAL")
    client(as_built, as_built=True).transact_write_items(TransactItems=ITEMS, ReturnConsumedCapacity="TOTAL")
    # Then both reach the same endpoint with the same JSON: every item, binaries in base64
    [(plain_url, plain_body)] = plain.sent
    [(url, body)] = as_built.sent
    assert url == plain_url
    sent, expected = json.loads(body), json.loads(plain_body)
    # each with an idempotency token of its own (botocore makes one per call), the rest the same
    assert sent.pop("ClientRequestToken") != expected.pop("ClientRequestToken")
    assert sent == expected
    assert len(sent["TransactItems"]) == len(ITEMS)


def test_a_retried_call_sends_the_same_body_again() -> None:
    # Given DynamoDB failing the first attempt with a 500 (botocore's standard mode retries it)
    answering = Answering((500, {"__type": "InternalServerError", "message": "try again"}), (200, {}))
    # When a transaction is sent
    client(answering, as_built=True).transact_write_items(TransactItems=ITEMS)
    # Then both attempts carried every item, and the same idempotency token
    assert [len(json.loads(body)["TransactItems"]) for _, body in answering.sent] == [len(ITEMS), len(ITEMS)]
    assert answering.sent[0][1] == answering.sent[1][1]


def test_other_calls_of_the_client_are_serialised_by_botocore_as_before() -> None:
    answering = Answering()
    made = client(answering, as_built=True)
    made.put_item(**ITEMS[1]["Put"])
    made.transact_write_items(TransactItems=ITEMS[1:2])
    [(_, put_body), (_, transaction_body)] = answering.sent
    assert json.loads(put_body) == json.loads(json.dumps(ITEMS[1]["Put"]))
    assert json.loads(transaction_body) == {"TransactItems": ITEMS[1:2], "ClientRequestToken": ANY}


def test_the_endpoint_rules_see_each_table_the_items_name_once() -> None:
    assert placeholder_items(ITEMS) == [
        {"Put": {"TableName": "replica", "Item": {}}},
        {"Put": {"TableName": "other", "Item": {}}},
    ]


def test_a_client_on_another_wire_protocol_keeps_botocores_own_serialiser() -> None:
    # Given a client whose service model speaks another protocol than the JSON this module writes (a botocore
    # release may move a service to a new one), asked to send transactions as built
    answering = Answering()
    made = client(answering, as_built=False)
    metadata = made.meta.service_model._service_description["metadata"]
    metadata["protocol"] = "smithy-rpc-v2-cbor"
    send_transactions_as_built(made)
    metadata["protocol"] = "json"  # only so that this test's call can be sent and looked at
    serialised: list[Any] = []
    made.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: serialised.append(params["TransactItems"]),
    )
    # When a transaction is sent
    made.transact_write_items(TransactItems=ITEMS[1:2])
    # Then botocore serialised the items themselves, not a placeholder the sink's body replaces
    assert serialised == [ITEMS[1:2]]
    [(_, body)] = answering.sent
    assert json.loads(body)["TransactItems"] == ITEMS[1:2]
