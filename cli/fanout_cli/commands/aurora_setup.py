"""``fanout aurora-setup``: print what an Aurora MySQL 3 cluster needs before the triggers can invoke the parser.

    fanout aurora-setup --db-user fanout --cluster my-cluster --stack-name fanout-prod
    fanout aurora-setup --db-user fanout --cluster my-cluster --role-arn arn:aws:iam::123456789012:role/...

Prints (runs nothing) the GRANT AWS_LAMBDA_ACCESS statements for the triggers'
definer — the database user of the DbSecretArn secret, which the post-deploy hook
connects as — and the `aws rds add-role-to-db-cluster --feature-name Lambda`
command with the stack's AuroraInvokeRoleArn output. See docs/migrations.md.
"""

from __future__ import annotations

import sys

import click

from fanout_cli.options import described, exactly_one


@click.command(
    "aurora-setup",
    help=described(__doc__),
    short_help="print the Aurora grants and role association the triggers need",
)
@click.option("--db-user", required=True, help="the database user of the DbSecretArn secret")
@click.option("--db-user-host", default="%", show_default=True, help="host part of that account")
@click.option("--cluster", required=True, help="the Aurora DB cluster identifier")
@click.option("--role-arn", help="the AuroraInvokeRoleArn output of the fanout stack")
@click.option("--stack-name", help="read AuroraInvokeRoleArn from this deployed stack")
@click.option("--region", help="AWS region (default: the AWS CLI's)")
def command(
    db_user: str, db_user_host: str, cluster: str, role_arn: str | None, stack_name: str | None, region: str | None
) -> int:
    from fanout_cli.aurora_setup import SetupError, aurora_lambda_setup, role_arn_from_stack

    exactly_one(role_arn=role_arn, stack_name=stack_name)
    try:
        if not role_arn:
            import boto3

            client = boto3.client("cloudformation", region_name=region or None)
            role_arn = role_arn_from_stack(client, str(stack_name))
        print(aurora_lambda_setup(db_user, db_user_host, cluster, role_arn, region or ""), end="")
    except SetupError as exc:
        print(f"fanout aurora-setup: {exc}", file=sys.stderr)
        return 1
    return 0
