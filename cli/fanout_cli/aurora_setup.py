"""What an Aurora MySQL cluster needs before the triggers can call the parser, as a script to run.

Two things, both outside the stack's reach (see docs/migrations.md):

1. In the database (Aurora MySQL 3): the triggers' definer — the account the
   post-deploy hook connects as, i.e. the ``DbSecretArn`` user — needs the
   ``AWS_LAMBDA_ACCESS`` role, and needs it active when a trigger runs. A trigger
   runs with its definer's privileges and cannot ``SET ROLE`` itself, so the role is
   made one of the account's default roles.
2. In AWS: the cluster must be allowed to assume the stack's ``AuroraInvokeRole``
   (output ``AuroraInvokeRoleArn``), associated with the feature name ``Lambda``.

Until both are in place every ring fails (the trigger takes the error), and the
changes wait in the change log until the sweeper rings the parser, once a minute
(``fanout sweep --status`` shows how many wait) — the application's writes are not
affected.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

_ACCOUNT_PART = re.compile(r"[A-Za-z0-9_.%-]{1,255}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_CLUSTER = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,62}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
ROLE_OUTPUT = "AuroraInvokeRoleArn"


class SetupError(ValueError):
    """An argument is not what the script needs; the message names it."""


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if pattern.fullmatch(value) is None:
        raise SetupError(f"{what} {value!r} is not valid")
    return value


def role_arn_from_stack(cloudformation: Any, stack_name: str) -> str:
    """The ``AuroraInvokeRoleArn`` output of a deployed fanout stack."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if ROLE_OUTPUT not in outputs:
        raise SetupError(f"stack {stack_name} has no {ROLE_OUTPUT} output; is it a fanout stack?")
    return str(outputs[ROLE_OUTPUT])


def aurora_lambda_setup(db_user: str, db_user_host: str, cluster: str, role_arn: str, region: str = "") -> str:
    """The SQL and the AWS CLI commands, with comments, ready to review and run."""
    user = _check(_ACCOUNT_PART, db_user, "database user")
    host = _check(_ACCOUNT_PART, db_user_host, "database user host")
    cluster = _check(_CLUSTER, cluster, "cluster identifier")
    role_arn = _check(_ROLE_ARN, role_arn, "role ARN")
    region_option = f" --region {_check(_REGION, region, 'region')}" if region else ""
    account = f"'{user}'@'{host}'"
    return f"""\
-- 1. In the database, as the cluster's admin user (Aurora MySQL 3).
-- The triggers run with the privileges of their definer: the account the post-deploy
-- hook connects as (the DbSecretArn user), {account}.
GRANT AWS_LAMBDA_ACCESS TO {account};
-- A trigger cannot SET ROLE, so the role must be active by default for that account.
-- SET DEFAULT ROLE replaces the account's list: add any default roles it already has.
SET DEFAULT ROLE AWS_LAMBDA_ACCESS TO {account};
-- Check (should list AWS_LAMBDA_ACCESS):
SHOW GRANTS FOR {account};

# 2. In AWS: let the cluster assume the role that may invoke the parser (once per cluster).
aws rds add-role-to-db-cluster{region_option} --db-cluster-identifier {shlex.quote(cluster)} \\
    --feature-name Lambda --role-arn {shlex.quote(role_arn)}
# Check (Status should become ACTIVE):
aws rds describe-db-clusters{region_option} --db-cluster-identifier {shlex.quote(cluster)} \\
    --query 'DBClusters[0].AssociatedRoles'
# The cluster also needs a network path to Lambda: a NAT gateway, or a Lambda interface VPC endpoint.
"""
