"""Options shared by the operator commands (``status``, ``dlq``): which stack, and durations."""

from __future__ import annotations

import argparse
import re
from typing import Any

from fanout.config import ConfigError
from fanout_cli.stack_resources import StackResources, resolve

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack-name",
        help="read the resource names from this stack's CloudFormation Outputs "
        "(default: $FANOUT_STACK_NAME, else the environment, e.g. .local/stack.env)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def stack_resources(args: argparse.Namespace) -> StackResources:
    return resolve(getattr(args, "stack_name", None))


def client(service: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    make: Any = boto3.client  # the service name is a runtime value; boto3's stubs want a literal
    try:
        return make(service, config=Config(**config) if config else None)
    except Exception as exc:  # noqa: BLE001 - no region, no credentials: a configuration problem
        raise ConfigError(f"cannot create an AWS {service} client: {exc}") from None
