"""boto3 clients and resources for the local stack's endpoint (the environment ``local_aws`` returns)."""

from __future__ import annotations

from typing import Any


def _aws_options(env: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def aws_resource(env: dict[str, str], service: str) -> Any:
    import boto3

    return boto3.resource(service, **_aws_options(env))  # type: ignore[call-overload]


def aws_client(env: dict[str, str], service: str) -> Any:
    import boto3

    return boto3.client(service, **_aws_options(env))  # type: ignore[call-overload]


def table_client(table: Any) -> Any:
    """A low-level DynamoDB client for a boto3 Table resource's endpoint, region and config: what the sink
    writes through (the resource's own client converts Python values, the sink sends attribute values)."""
    import boto3

    from local.config import LocalConfig

    env = LocalConfig.from_env().aws_env()
    meta = table.meta.client.meta
    return boto3.client(
        "dynamodb",
        endpoint_url=meta.endpoint_url,
        region_name=meta.region_name,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=meta.config,
    )


def dynamodb_sink(table: Any, *args: Any, **kwargs: Any) -> Any:
    """The DynamoDB sink writing into a boto3 Table resource (``args``: DynamoDBSink's after the table)."""
    from fanout.sinks.dynamodb import DynamoDBSink

    return DynamoDBSink(table_client(table), table.name, *args, **kwargs)
