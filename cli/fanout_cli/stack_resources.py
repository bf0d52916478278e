"""The names of a deployed stack's resources, for the operator commands (``fanout status``, ``fanout dlq``).

Two sources, the same names either way:

- the environment: ``DEAD_LETTER_QUEUE_URL``, ``PARSER_FUNCTION_NAME``,
  ``FETCHER_FUNCTION_NAME``, ``PARSER_LOG_GROUP``, ``FETCHER_LOG_GROUP``
  (``make up`` writes them to .local/stack.env for the local stack);
- the stack's CloudFormation Outputs, with ``--stack-name`` (or
  ``FANOUT_STACK_NAME``): what an operator uses against AWS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fanout.config import ConfigError

# field -> (environment variable, stack Output)
_SOURCES = {
    "dead_letter_queue_url": ("DEAD_LETTER_QUEUE_URL", "DeadLetterQueueUrl"),
    "parser_function_name": ("PARSER_FUNCTION_NAME", "ParserFunctionName"),
    "fetcher_function_name": ("FETCHER_FUNCTION_NAME", "FetcherFunctionName"),
    "parser_log_group": ("PARSER_LOG_GROUP", "ParserLogGroupName"),
    "fetcher_log_group": ("FETCHER_LOG_GROUP", "FetcherLogGroupName"),
}


@dataclass(frozen=True)
class StackResources:
    dead_letter_queue_url: str
    parser_function_name: str
    fetcher_function_name: str
    parser_log_group: str
    fetcher_log_group: str
    fetch_queue_url: str = ""  # optional (FETCH_QUEUE_URL, Output FetchQueueUrl): `fanout status` reads its depth

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackResources:
        env = os.environ if env is None else env
        values: dict[str, str] = {}
        for field, (variable, _) in _SOURCES.items():
            value = env.get(variable, "").strip()
            if not value:
                raise ConfigError(
                    f"environment variable {variable} is required but not set "
                    "(or pass --stack-name to read the stack's Outputs)"
                )
            values[field] = value
        return cls(**values, fetch_queue_url=env.get("FETCH_QUEUE_URL", "").strip())

    @classmethod
    def from_stack(cls, cloudformation: Any, stack_name: str) -> StackResources:
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except Exception as exc:  # noqa: BLE001 - any failure here is a configuration problem to report
            raise ConfigError(f"cannot read stack {stack_name!r}: {exc}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        values: dict[str, str] = {}
        for field, (_, output) in _SOURCES.items():
            if not outputs.get(output):
                raise ConfigError(f"stack {stack_name!r} has no Output {output} (deployed before it existed?)")
            values[field] = outputs[output]
        return cls(**values, fetch_queue_url=outputs.get("FetchQueueUrl", ""))

    def role_of(self, function: str) -> str:
        """``parser`` / ``fetcher`` for one of this stack's functions (name or ARN, qualified or not), else ``""``."""
        name = function_name_of(function)
        if name == self.parser_function_name:
            return "parser"
        if name == self.fetcher_function_name:
            return "fetcher"
        return ""

    def function_for(self, role: str) -> str:
        return {"parser": self.parser_function_name, "fetcher": self.fetcher_function_name}[role]


def function_name_of(function: str) -> str:
    """The bare name of ``name``, ``arn:aws:lambda:region:account:function:name`` or the same with ``:qualifier``."""
    parts = function.split(":")
    if len(parts) >= 7 and parts[0] == "arn":
        return parts[6]
    return function


def resolve(stack_name: str | None) -> StackResources:
    """From the stack's Outputs if a stack is named (``--stack-name``, ``FANOUT_STACK_NAME``), else the environment."""
    stack_name = stack_name or os.environ.get("FANOUT_STACK_NAME", "").strip() or None
    if stack_name:
        import boto3

        return StackResources.from_stack(boto3.client("cloudformation"), stack_name)
    return StackResources.from_env()
