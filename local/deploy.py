"""Deploying the app to the local stack exactly as to AWS: ``sam build`` then ``sam deploy --config-env local``
with AWS_ENDPOINT_URL pointing at ministack, after the resources the template takes as given (the artifacts
bucket, the database secret). The post-deploy hook (a CloudFormation custom resource) applies db/migrations.

Workarounds for ministack's gaps live here, never in the production code: the one needed so far is
:func:`fix_event_source_mappings`. EventInvokeConfig OnFailure to SQS is honoured; the template does not rely
on DeadLetterConfig; the dashboard and the single-metric alarms deploy as on AWS; the sweeper's EventBridge
rate(1 minute) schedule fires (checked on ministack 1.5.33). Where ministack behaves differently (its
on-failure record, no EMF-to-metrics, no X-Ray daemon), see docs/architecture.md, "Observability and operations".
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3

from local.config import LOG_DIR, ROOT, VENV_BIN, LocalConfig, StackEnv, say
from local.processes import base_env


def aws_client(cfg: LocalConfig, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=cfg.aws_endpoint,
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def ensure_aws_resources(cfg: LocalConfig) -> str:
    """The artifacts bucket and the database secret; returns the secret's ARN."""
    s3 = aws_client(cfg, "s3")
    try:
        s3.head_bucket(Bucket=cfg.artifacts_bucket)
    except Exception:  # noqa: BLE001 - absent: create it
        s3.create_bucket(Bucket=cfg.artifacts_bucket)
    secrets = aws_client(cfg, "secretsmanager")
    value = json.dumps(
        {
            "username": cfg.db_user,
            "password": cfg.db_password,
            "engine": "mysql",
            "host": cfg.db_host,
            "port": cfg.db_port,
            "dbname": cfg.db_name,
        }
    )
    try:
        arn = secrets.describe_secret(SecretId=cfg.secret_name)["ARN"]
        secrets.put_secret_value(SecretId=arn, SecretString=value)
    except secrets.exceptions.ResourceNotFoundException:
        arn = secrets.create_secret(Name=cfg.secret_name, SecretString=value)["ARN"]
    return str(arn)


def _python312_bin_dirs() -> list[Path]:
    base = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not base.is_dir():
        return []
    return sorted(p / "bin" for p in base.glob("3.12*") if (p / "bin" / "python3.12").exists())


def sam_env(cfg: LocalConfig) -> dict[str, str]:
    # sam build looks for the runtime's interpreter (python3.12) on PATH.
    path = os.pathsep.join([str(VENV_BIN), *map(str, _python312_bin_dirs()), os.environ.get("PATH", "")])
    return base_env() | cfg.aws_env() | {"PATH": path, "SAM_CLI_TELEMETRY": "0"}


def parameter_overrides(cfg: LocalConfig, secret_arn: str) -> dict[str, str]:
    return {
        "Stage": "local",
        "DbHost": cfg.db_host,
        "DbPort": str(cfg.db_port),
        "DbName": cfg.db_name,
        "DbSecretArn": secret_arn,
        "OpenSearchEndpoint": cfg.opensearch_endpoint,
        "OpenSearchAuth": "none",
        # The local server's certificate is self-signed (not the RDS CA), and ministack has no
        # AWS::Lambda::ResourcePolicy (docs/security.md).
        "DbTls": "off",
        "RestrictInvokers": "false",
        "RemoveTriggersOnDelete": "true",
        "LogLevel": "INFO",
        # A received change stays hidden as long as the fetcher may run (its 60 s timeout, the least AWS accepts;
        # 6x is advised, the default): a shorter one (3 s, before) let a second fetcher take a change still being
        # applied, and a burst spent its receives on load alone, dead-lettering applied changes. A failing
        # change is dead-lettered after 3 receives, about two minutes.
        "FetchVisibilityTimeoutSeconds": "60",
        "FetchMaxReceiveCount": "3",
        # ministack's CloudFormation has no AWS::Events::Archive: the archive is made with the API instead
        # (ensure_event_archive; docs/runbook.md, "Replaying change events").
        "ArchiveChangeEvents": "disabled",
    }


def deploy(cfg: LocalConfig, secret_arn: str) -> dict[str, str]:
    """sam build + sam deploy; returns the stack's outputs."""
    sam = str(VENV_BIN / "sam")
    env = sam_env(cfg)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    say("sam build")
    with open(LOG_DIR / "sam-build.log", "wb") as log:
        build = subprocess.run([sam, "build", "--config-env", "local"], cwd=ROOT, env=env, stdout=log, stderr=log)
    if build.returncode != 0:
        raise SystemExit(f"[local] sam build failed; see {LOG_DIR / 'sam-build.log'}")
    overrides = parameter_overrides(cfg, secret_arn)
    say("sam deploy --config-env local")
    command = [
        sam, "deploy", "--config-env", "local", "--no-progressbar",
        "--parameter-overrides", " ".join(f"{k}={v}" for k, v in overrides.items()),
    ]  # fmt: skip
    with open(LOG_DIR / "sam-deploy.log", "wb") as log:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    if result.returncode != 0:
        raise SystemExit(f"[local] sam deploy failed; see {LOG_DIR / 'sam-deploy.log'}")
    stacks = aws_client(cfg, "cloudformation").describe_stacks(StackName=cfg.stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def fix_event_source_mappings(cfg: LocalConfig) -> None:
    """ministack gap: its CloudFormation stores an EventSourceMapping's ScalingConfig as the template's
    parameter *string* ("5"), and its SQS poller then fails comparing it with a number (real CloudFormation
    passes a number). Set it again through the Lambda API, which keeps the JSON number."""
    lam = aws_client(cfg, "lambda")
    function = f"{cfg.stack_name}-fetcher"
    for esm in lam.list_event_source_mappings(FunctionName=function).get("EventSourceMappings", []):
        limit = (esm.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if limit is not None:
            lam.update_event_source_mapping(UUID=esm["UUID"], ScalingConfig={"MaximumConcurrency": int(limit)})


def ensure_event_archive(cfg: LocalConfig, outputs: dict[str, str]) -> None:
    """ministack gap: its CloudFormation does not provision AWS::Events::Archive (the template's EventArchive),
    while its EventBridge API archives and replays. Create the same archive (name, pattern, retention) there."""
    events = aws_client(cfg, "events")
    name = f"{cfg.stack_name}-changes"
    try:
        events.describe_archive(ArchiveName=name)
        return
    except events.exceptions.ResourceNotFoundException:
        pass
    events.create_archive(
        ArchiveName=name,
        EventSourceArn=outputs["EventBusArn"],
        Description="fanout change events, kept for replay to a new consumer",
        EventPattern='{"source": ["fanout"]}',
        RetentionDays=30,
    )


def stack_env(cfg: LocalConfig, outputs: dict[str, str], secret_arn: str) -> StackEnv:
    """The endpoints and deployed names for .local/stack.env."""
    return StackEnv.from_environ(
        cfg.aws_env()
        | cfg.db_env()
        | {
            "OPENSEARCH_ENDPOINT": cfg.opensearch_endpoint,
            "OPENSEARCH_AUTH": "none",
            "DB_SECRET_ARN": secret_arn,
            "STACK_NAME": cfg.stack_name,
            "PARSER_FUNCTION_ARN": outputs["ParserFunctionArn"],
            "PARSER_FUNCTION_NAME": outputs["ParserFunctionName"],
            "FETCHER_FUNCTION_ARN": outputs["FetcherFunctionArn"],
            "FETCHER_FUNCTION_NAME": outputs["FetcherFunctionName"],
            "MIGRATIONS_FUNCTION_NAME": outputs["MigrationsFunctionName"],
            "SWEEPER_FUNCTION_NAME": outputs["SweeperFunctionName"],
            "MAINTENANCE_FUNCTION_NAME": outputs["MaintenanceFunctionName"],
            "AURORA_INVOKE_ROLE_ARN": outputs["AuroraInvokeRoleArn"],
            "DEAD_LETTER_QUEUE_URL": outputs["DeadLetterQueueUrl"],
            "FETCH_QUEUE_URL": outputs["FetchQueueUrl"],  # fanout status reads its depth (the backlog)
            "DYNAMODB_TABLE": outputs["ReplicaTableName"],
            "PARSER_LOG_GROUP": outputs["ParserLogGroupName"],
            "FETCHER_LOG_GROUP": outputs["FetcherLogGroupName"],
            "DASHBOARD_NAME": outputs["DashboardName"],
            "EVENT_BUS_NAME": outputs["EventBusName"],
        }
    )


def deploy_app(cfg: LocalConfig) -> StackEnv:
    """The app deployed with the current code on the running services; .local/stack.env written."""
    secret_arn = ensure_aws_resources(cfg)
    outputs = deploy(cfg, secret_arn)
    fix_event_source_mappings(cfg)
    ensure_event_archive(cfg, outputs)
    env = stack_env(cfg, outputs, secret_arn)
    env.write()
    return env
