"""The local stack keeps its state across a restart, as MySQL keeps its rows (local/stack.py)."""

from __future__ import annotations

import uuid
from typing import Any

import psutil

from local.processes import running_pid
from tests.support.aws import aws_client, aws_resource


def test_the_local_aws_services_keep_their_data_when_ministack_is_restarted(local_aws: dict[str, Any]) -> None:
    from local.stack import LocalConfig, restart

    # Given a replica item, a queued message and a log group on the running ministack
    name = f"fanout-state-{uuid.uuid4().hex[:8]}"
    table = aws_resource(local_aws, "dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    sqs, logs = aws_client(local_aws, "sqs"), aws_client(local_aws, "logs")
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        table.put_item(Item={"pk": "posts#1", "title": "kept"})
        sqs.send_message(QueueUrl=queue, MessageBody="kept")
        logs.create_log_group(logGroupName=f"/fanout/{name}")

        # When ministack is stopped and started again (what `make down` + `make up` do to it)
        restart("ministack")

        # Then it runs through the launcher that keeps its collector off its state (local/ministack_launch.py)
        pid = running_pid("ministack")
        assert pid is not None and any(part.endswith("ministack_launch.py") for part in psutil.Process(pid).cmdline())
        # and all three are still there
        assert table.get_item(Key={"pk": "posts#1"})["Item"]["title"] == "kept"
        [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
        assert message["Body"] == "kept"
        groups = logs.describe_log_groups(logGroupNamePrefix=f"/fanout/{name}")["logGroups"]
        assert [g["logGroupName"] for g in groups] == [f"/fanout/{name}"]
        assert LocalConfig.from_env().aws_endpoint == local_aws["AWS_ENDPOINT_URL"]
    finally:
        table.delete()
        sqs.delete_queue(QueueUrl=queue)
        logs.delete_log_group(logGroupName=f"/fanout/{name}")
