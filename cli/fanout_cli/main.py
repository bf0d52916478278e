"""The ``fanout`` command group, and :func:`main`, the entry point: the commands' exit status, 2 for a usage or
configuration error."""

from __future__ import annotations

import sys

import click

from fanout.config import ConfigError
from fanout_cli.commands import (
    aurora_setup,
    backfill,
    check,
    dlq,
    migrate,
    migrations,
    reconcile,
    reindex,
    status,
    sweep,
)


# no_args_is_help=False: a missing command is a usage error (exit status 2), not a help page with status 0.
@click.group(context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=False)
def fanout() -> None:
    """Replicate Aurora MySQL row changes into OpenSearch and DynamoDB.

    Every command reads the same environment variables as the functions (DB_HOST, DB_NAME, DB_SECRET_ARN or
    DB_USER/DB_PASSWORD, AWS_ENDPOINT_URL, ...); for the local stack, `make up` writes them to .local/stack.env.
    """


for _command in (
    migrate.command,
    migrations.group,
    sweep.command,
    aurora_setup.command,
    status.command,
    dlq.group,
    backfill.command,
    reconcile.command,
    reindex.command,
    check.command,
):
    fanout.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run ``fanout`` on ``argv`` (default: the process's arguments) and return its exit status."""
    try:
        return int(fanout.main(args=argv, prog_name="fanout", standalone_mode=False) or 0)
    except click.ClickException as exc:  # a usage error: usage and reason on stderr
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C, or end of input at a prompt
        click.echo("Aborted!", err=True)
        return 1
    except ConfigError as exc:
        print(f"fanout: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
