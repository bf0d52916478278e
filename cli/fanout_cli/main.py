"""The ``fanout`` command line: one module per command, registered here.

Every command reads the same environment variables as the functions (DB_HOST,
DB_NAME, DB_SECRET_ARN or DB_USER/DB_PASSWORD, AWS_ENDPOINT_URL, ...); for the
local stack, `make up` writes them to .local/stack.env.
"""

from __future__ import annotations

import argparse
import sys

from fanout.config import ConfigError
from fanout_cli.commands import aurora_setup, backfill, dlq, migrate, migrations, reconcile, status, sweep

COMMANDS = (migrate, migrations, sweep, aurora_setup, status, dlq, backfill, reconcile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout",
        description="Replicate Aurora MySQL row changes into OpenSearch and DynamoDB.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"fanout: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
