"""``fanout aurora-setup``: print what an Aurora MySQL 3 cluster needs before the triggers can invoke the parser.

    fanout aurora-setup --db-user fanout --cluster my-cluster --stack-name fanout-prod
    fanout aurora-setup --db-user fanout --cluster my-cluster --role-arn arn:aws:iam::123456789012:role/...

Prints (runs nothing) the GRANT AWS_LAMBDA_ACCESS statements for the triggers'
definer — the database user of the DbSecretArn secret, which the post-deploy hook
connects as — and the `aws rds add-role-to-db-cluster --feature-name Lambda`
command with the stack's AuroraInvokeRoleArn output. See docs/migrations.md.
"""

from __future__ import annotations

import argparse
import sys


def _aurora_setup(args: argparse.Namespace) -> int:
    from fanout_cli.aurora_setup import SetupError, aurora_lambda_setup, role_arn_from_stack

    try:
        role_arn = args.role_arn
        if not role_arn:
            import boto3

            client = boto3.client("cloudformation", **({"region_name": args.region} if args.region else {}))
            role_arn = role_arn_from_stack(client, args.stack_name)
        print(aurora_lambda_setup(args.db_user, args.db_user_host, args.cluster, role_arn, args.region or ""), end="")
    except SetupError as exc:
        print(f"fanout aurora-setup: {exc}", file=sys.stderr)
        return 1
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    setup = commands.add_parser(
        "aurora-setup",
        help="print the Aurora grants and role association the triggers need",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup.add_argument("--db-user", required=True, help="the database user of the DbSecretArn secret")
    setup.add_argument("--db-user-host", default="%", help="host part of that account (default: %(default)s)")
    setup.add_argument("--cluster", required=True, help="the Aurora DB cluster identifier")
    role = setup.add_mutually_exclusive_group(required=True)
    role.add_argument("--role-arn", help="the AuroraInvokeRoleArn output of the fanout stack")
    role.add_argument("--stack-name", help="read AuroraInvokeRoleArn from this deployed stack")
    setup.add_argument("--region", help="AWS region (default: the AWS CLI's)")
    setup.set_defaults(run=_aurora_setup)
