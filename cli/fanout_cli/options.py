"""What the commands share: which stack, ``--json``, durations, option checks, help text as written, AWS clients."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from fanout.config import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):
    """``90``, ``90s``, ``15m``, ``2h``, ``7d`` -> seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        match = _DURATION.match(str(value))
        if not match:
            self.fail(f"not a duration: {value!r} (use e.g. 90s, 15m, 2h, 7d)", param, ctx)
        return float(match.group(1)) * _SECONDS[match.group(2)]


DURATION = Duration()


def described(doc: str | None) -> str:
    """A command's module docstring as its ``--help`` text, laid out as written (its examples are aligned by hand;
    click rewraps every paragraph not marked with ``\\b``)."""
    return "\n\n".join(f"\b\n{paragraph}" for paragraph in (doc or "").strip().split("\n\n"))


def json_option[F: Callable[..., Any]](command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="machine-readable output")(command)


def stack_options[F: Callable[..., Any]](command: F) -> F:
    """``--stack-name`` and ``--json``, for the commands that read a deployed stack (``status``, ``dlq``)."""
    command = json_option(command)
    return click.option(
        "--stack-name",
        help="read the resource names from this stack's CloudFormation Outputs "
        "(default: $FANOUT_STACK_NAME, else the environment, e.g. .local/stack.env)",
    )(command)


def at_most_one(**flags: Any) -> None:
    """A usage error (exit status 2) when more than one of the mutually exclusive ``flags`` is given."""
    given = [name for name, value in flags.items() if value]
    if len(given) > 1:
        raise click.UsageError(f"{_option(given[0])} is not allowed with {_option(given[1])}")


def exactly_one(**options: Any) -> None:
    """A usage error (exit status 2) unless exactly one of ``options`` is given."""
    at_most_one(**options)
    if not any(options.values()):
        raise click.UsageError("one of " + ", ".join(_option(name) for name in options) + " is required")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def client(service: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    make: Any = boto3.client  # the service name is a runtime value; boto3's stubs want a literal
    try:
        return make(service, config=Config(**config) if config else None)
    except Exception as exc:  # noqa: BLE001 - no region, no credentials: a configuration problem
        raise ConfigError(f"cannot create an AWS {service} client: {exc}") from None
