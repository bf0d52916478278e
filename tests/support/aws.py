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
