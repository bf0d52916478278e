"""The local stack: everything the pipeline needs on one machine, without Docker.

    python local/stack.py up      # start services, deploy the app
    python local/stack.py down    # stop what `up` started
    python local/stack.py status  # what is running, and where
    python local/stack.py restart bridge|ministack|opensearch   # one piece, no redeploy

State outlives `down`: MySQL's rows (.local/mysql/data), OpenSearch's data (.local/opensearch/data) and
ministack's (.local/ministack-state: saved when it stops, loaded when it starts).

| Production            | Here                                                          |
|-----------------------|---------------------------------------------------------------|
| Aurora MySQL 3        | MySQL 8.0.31 (local/mysql.py) on 127.0.0.1:$FANOUT_DB_PORT    |
| lambda_async          | a loadable function + local/lambda_async/bridge.py            |
| Lambda, SQS, DynamoDB,| ministack (pinned, own venv in .local/ministack-venv) on      |
| S3, Secrets Manager,  | 127.0.0.1:$FANOUT_AWS_PORT (default 4566)                      |
| CloudFormation        |                                                               |
| OpenSearch Service    | a real OpenSearch 2.19 node (local/opensearch.py) on          |
|                       | 127.0.0.1:$FANOUT_OPENSEARCH_PORT (default 9200), or          |
|                       | $OPENSEARCH_ENDPOINT when it is set                           |

The app is deployed exactly as to AWS: ``sam build`` then ``sam deploy
--config-env local`` with AWS_ENDPOINT_URL pointing at ministack; the
post-deploy hook (a CloudFormation custom resource) applies db/migrations.
Endpoints and deployed names are written to .local/stack.env as KEY=value.

Workarounds for ministack's gaps live here, never in the production code:
none are needed for the path used so far (EventInvokeConfig OnFailure to SQS
is honoured; the template does not rely on DeadLetterConfig; the dashboard and
the single-metric alarms deploy as on AWS; the sweeper's EventBridge
rate(1 minute) schedule fires, checked on ministack 1.5.33). Where ministack
behaves differently (its on-failure record, no EMF-to-metrics, no X-Ray
daemon), see docs/architecture.md, "Observability and operations".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"
RUN_DIR = STATE_DIR / "run"
LOG_DIR = STATE_DIR / "logs"
STACK_ENV = STATE_DIR / "stack.env"
MINISTACK_BIN = STATE_DIR / "ministack-venv" / "bin" / "ministack"
MINISTACK_STATE = STATE_DIR / "ministack-state"
VENV_BIN = ROOT / ".venv" / "bin"

sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from fanout.capture.migration_scripts import split_statements  # noqa: E402
from local import mysql as local_mysql  # noqa: E402
from local import opensearch as local_opensearch  # noqa: E402


@dataclass(frozen=True)
class LocalConfig:
    aws_port: int
    opensearch_port: int
    lambda_async_port: int
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    db_name: str
    region: str = "us-east-1"
    stack_name: str = "fanout-local"
    artifacts_bucket: str = "fanout-local-artifacts"
    secret_name: str = "fanout/local/db"

    @classmethod
    def from_env(cls) -> LocalConfig:
        env = os.environ
        return cls(
            aws_port=int(env.get("FANOUT_AWS_PORT", "4566")),
            opensearch_port=int(env.get("FANOUT_OPENSEARCH_PORT", "9200")),
            lambda_async_port=int(env.get("FANOUT_LAMBDA_ASYNC_PORT", "4599")),
            db_host=env.get("FANOUT_DB_HOST", "127.0.0.1"),
            db_port=int(env.get("FANOUT_DB_PORT", "3306")),
            db_user=env.get("FANOUT_DB_USER", "root"),
            db_password=env.get("FANOUT_DB_PASSWORD", ""),
            db_name=env.get("FANOUT_DB_NAME", "fanout_demo"),
        )

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    @property
    def opensearch_endpoint(self) -> str:
        """``OPENSEARCH_ENDPOINT`` when the user gives one, else the local node's."""
        given = os.environ.get("OPENSEARCH_ENDPOINT", "").rstrip("/")
        return given or local_opensearch.endpoint(self.opensearch_port)

    def aws_env(self) -> dict[str, str]:
        """Environment for AWS SDK / CLI calls against the local stack."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def db_env(self) -> dict[str, str]:
        return {
            "DB_HOST": self.db_host,
            "DB_PORT": str(self.db_port),
            "DB_USER": self.db_user,
            "DB_PASSWORD": self.db_password,
            "DB_NAME": self.db_name,
            "DB_TLS": "off",
        }


def say(message: str) -> None:
    print(f"[local] {message}", flush=True)


# --------------------------------------------------------------------------- processes


def _pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


def running_pid(name: str) -> int | None:
    try:
        pid = int(_pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def start_process(name: str, argv: list[str], env: dict[str, str]) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{name}.log", "ab")
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the `make up` that started it
    )
    _pid_file(name).write_text(str(proc.pid))
    return proc.pid


def stop_process(name: str, timeout: float = 10.0) -> bool:
    pid = running_pid(name)
    _pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def wait_for(what: str, check, timeout: float, log_name: str | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    hint = f"; see {LOG_DIR / log_name}.log" if log_name else ""
    raise SystemExit(f"[local] {what} did not come up within {timeout:.0f}s{hint}")


def base_env() -> dict[str, str]:
    """A clean environment for child services: no AWS_ENDPOINT_URL or DB settings leak into them."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}


# --------------------------------------------------------------------------- services


def ensure_lambda_async_bridge(cfg: LocalConfig, restart: bool = False) -> None:
    """The process the lambda_async loadable function hands its calls to (local/lambda_async/bridge.py)."""
    if running_pid("bridge") and port_open(cfg.lambda_async_port) and not restart:
        return
    stop_process("bridge")
    if port_open(cfg.lambda_async_port):
        raise SystemExit(
            f"[local] port {cfg.lambda_async_port} is taken by another program; set FANOUT_LAMBDA_ASYNC_PORT"
        )
    say(f"starting the lambda_async bridge on 127.0.0.1:{cfg.lambda_async_port}")
    start_process(
        "bridge",
        [sys.executable, str(ROOT / "local" / "lambda_async" / "bridge.py"), "--port", str(cfg.lambda_async_port)],
        base_env() | cfg.aws_env() | {"PYTHONUNBUFFERED": "1"},
    )
    wait_for("the lambda_async bridge", lambda: port_open(cfg.lambda_async_port), 15, "bridge")


def ensure_mysql(cfg: LocalConfig) -> None:
    """MySQL 8.0 up on cfg.db_port with lambda_async installed (local/mysql.py); the bridge beside it.

    A server already listening there is used only if it is MySQL 8.0 (ours or the user's own, given by
    FANOUT_DB_*); anything else (a MariaDB left from an earlier setup, say) is refused with what to do.
    """
    if cfg.db_host not in ("127.0.0.1", "localhost"):
        found = local_mysql.server_identity(cfg.db_host, cfg.db_port, cfg.db_user, cfg.db_password)
        if found is None or not found.startswith("8.0."):
            raise SystemExit(f"[local] {cfg.db_host}:{cfg.db_port} is not a MySQL 8.0 we can log in to ({found})")
        return
    ensure_lambda_async_bridge(cfg)
    if not (running_pid("mysql") and port_open(cfg.db_port)):
        stop_process("mysql", timeout=60)
        if port_open(cfg.db_port):
            found = local_mysql.server_identity(cfg.db_host, cfg.db_port, cfg.db_user, cfg.db_password)
            if found is None or not found.startswith("8.0.") or "MariaDB" in found:
                raise SystemExit(
                    f"[local] port {cfg.db_port} is taken by {found or 'a program that is not MySQL'}; fanout needs "
                    "MySQL 8.0 (Aurora MySQL 3): stop it, or set FANOUT_DB_PORT to start the project's own there"
                )
            say(f"using the MySQL {found} already on {cfg.db_host}:{cfg.db_port}")
        else:
            argv, env = local_mysql.command(cfg.db_port, cfg.lambda_async_port)
            say(f"starting MySQL {local_mysql.VERSION} on {cfg.db_host}:{cfg.db_port}")
            start_process("mysql", argv, env)
            found = local_mysql.wait_until_ready(cfg.db_port, alive=lambda: running_pid("mysql") is not None)
            say(f"MySQL {found} is up")
    import pymysql

    conn = pymysql.connect(
        host=cfg.db_host, port=cfg.db_port, user=cfg.db_user, password=cfg.db_password, autocommit=True
    )
    try:
        local_mysql.install_lambda_async(conn)
    finally:
        conn.close()


def ensure_ministack(cfg: LocalConfig) -> bool:
    """Start ministack unless it is running; True if it was (re)started (its state is in memory)."""
    health = f"{cfg.aws_endpoint}/_ministack/health"
    if running_pid("ministack") and http_ok(health):
        return False
    stop_process("ministack")
    if port_open(cfg.aws_port):
        raise SystemExit(f"[local] port {cfg.aws_port} is taken by another program; set FANOUT_AWS_PORT")
    if not MINISTACK_BIN.exists():
        raise SystemExit(f"[local] {MINISTACK_BIN} is missing: run `make install` first")
    say(f"starting ministack on {cfg.aws_endpoint}")
    env = base_env() | {
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(cfg.aws_port),
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        "MINISTACK_REGION": cfg.region,
        "PYTHONUNBUFFERED": "1",
        # ministack keeps its state in memory: saved here when it stops (SIGTERM), loaded when it starts,
        # so the sinks and the deployed stack outlive `make down` as MySQL's rows do.
        "PERSIST_STATE": "1",
        "STATE_DIR": str(MINISTACK_STATE),
    }
    start_process("ministack", [str(MINISTACK_BIN)], env)
    wait_for("ministack", lambda: http_ok(health), 60, "ministack")
    return True


def ensure_opensearch(cfg: LocalConfig) -> str:
    """A running OpenSearch; returns its endpoint.

    ``OPENSEARCH_ENDPOINT`` set to anything but the local node's address (a container, an Amazon OpenSearch
    Service domain) is used as it is. Otherwise the real single-node OpenSearch of local/opensearch.py is
    started unless it runs already (one started by another checkout of the project is shared).
    """
    if cfg.opensearch_endpoint != local_opensearch.endpoint(cfg.opensearch_port):
        if not http_ok(cfg.opensearch_endpoint + "/"):
            raise SystemExit(f"[local] OPENSEARCH_ENDPOINT={cfg.opensearch_endpoint} does not answer")
        return cfg.opensearch_endpoint
    found = local_opensearch.info(cfg.opensearch_port)
    if found is not None:
        if found.get("version", {}).get("distribution") != "opensearch":
            raise SystemExit(
                f"[local] port {cfg.opensearch_port} is taken by another program; set FANOUT_OPENSEARCH_PORT"
            )
        return cfg.opensearch_endpoint
    stop_process("opensearch")
    if port_open(cfg.opensearch_port):
        raise SystemExit(f"[local] port {cfg.opensearch_port} is taken by another program; set FANOUT_OPENSEARCH_PORT")
    argv, env = local_opensearch.command(cfg.opensearch_port)
    say(f"starting OpenSearch {local_opensearch.VERSION} on {cfg.opensearch_endpoint}")
    start_process("opensearch", argv, env)
    found = local_opensearch.wait_until_ready(cfg.opensearch_port, alive=lambda: running_pid("opensearch") is not None)
    say(f"OpenSearch {found['version']['number']} is up")
    return cfg.opensearch_endpoint


def run_sql_file(conn, path: Path) -> None:  # type: ignore[no-untyped-def]
    with conn.cursor() as cur:
        for statement in split_statements(path.read_text(encoding="utf-8")):
            cur.execute(statement)


def prepare_database(cfg: LocalConfig) -> None:
    """The demo schema (lambda_async is global: ensure_mysql installs it)."""
    import pymysql

    conn = pymysql.connect(
        host=cfg.db_host,
        port=cfg.db_port,
        user=cfg.db_user,
        password=cfg.db_password,
        charset="utf8mb4",
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{cfg.db_name}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{cfg.db_name}`")
        run_sql_file(conn, ROOT / "local" / "demo_schema.sql")
    finally:
        conn.close()


def aws_client(cfg: LocalConfig, service: str):  # type: ignore[no-untyped-def]
    import boto3

    env = cfg.aws_env()
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _admin_execute(cfg: LocalConfig, statement: str) -> None:
    import pymysql

    conn = pymysql.connect(
        host=cfg.db_host, port=cfg.db_port, user=cfg.db_user, password=cfg.db_password, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_database(cfg: LocalConfig, prefix: str = "fanout_bench") -> str:
    """A new, empty, uniquely named database on the local MySQL (benchmarks); the caller drops it."""
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    _admin_execute(cfg, f"CREATE DATABASE `{name}`")
    return name


def drop_database(cfg: LocalConfig, name: str) -> None:
    _admin_execute(cfg, f"DROP DATABASE `{name}`")


def create_replica_table(cfg: LocalConfig, name: str):  # type: ignore[no-untyped-def]
    """A throwaway DynamoDB table on ministack with the ReplicaTable's key schema (benchmarks).

    Returns ``(dynamodb resource, table)``; the caller deletes the table.
    """
    import boto3

    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=cfg.aws_endpoint,
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    table = dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return dynamodb, table


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


def sam_env(cfg: LocalConfig) -> dict[str, str]:
    # sam build looks for the runtime's interpreter (python3.12) on PATH.
    extra_path = [str(p) for p in _python312_bin_dirs()]
    path = os.pathsep.join([str(VENV_BIN), *extra_path, os.environ.get("PATH", "")])
    return base_env() | cfg.aws_env() | {"PATH": path, "SAM_CLI_TELEMETRY": "0"}


def _python312_bin_dirs() -> list[Path]:
    candidates = [Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"]
    found = []
    for base in candidates:
        if base.is_dir():
            found += sorted(p / "bin" for p in base.glob("3.12*") if (p / "bin" / "python3.12").exists())
    return found


def deploy(cfg: LocalConfig, secret_arn: str) -> dict[str, str]:
    sam = str(VENV_BIN / "sam")
    env = sam_env(cfg)
    say("sam build")
    subprocess.run(
        [sam, "build", "--config-env", "local"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=open(LOG_DIR / "sam-build.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    overrides = {
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
        # A failing queued change is retried every 3 s and dead-lettered after 3 receives, so the e2e tests see
        # the dead-letter queue within seconds (in AWS: >= the fetcher's timeout, 6x advised; the defaults).
        "FetchVisibilityTimeoutSeconds": "3",
        "FetchMaxReceiveCount": "3",
    }
    say("sam deploy --config-env local")
    result = subprocess.run(
        [
            sam,
            "deploy",
            "--config-env",
            "local",
            "--no-progressbar",
            "--parameter-overrides",
            " ".join(f"{k}={v}" for k, v in overrides.items()),
        ],
        cwd=ROOT,
        env=env,
        stdout=open(LOG_DIR / "sam-deploy.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        raise SystemExit(f"[local] sam deploy failed; see {LOG_DIR / 'sam-deploy.log'}")
    stacks = aws_client(cfg, "cloudformation").describe_stacks(StackName=cfg.stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def write_stack_env(cfg: LocalConfig, outputs: dict[str, str], secret_arn: str) -> dict[str, str]:
    values = (
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
            "DYNAMODB_TABLE": outputs["ReplicaTableName"],
            "PARSER_LOG_GROUP": outputs["ParserLogGroupName"],
            "FETCHER_LOG_GROUP": outputs["FetcherLogGroupName"],
            "DASHBOARD_NAME": outputs["DashboardName"],
        }
    )
    STACK_ENV.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def source_connection(env: dict[str, str], *, autocommit: bool = True):  # type: ignore[no-untyped-def]
    """A plain application-side connection to the demo database named in ``env`` (stack.env)."""
    import pymysql

    conn = pymysql.connect(
        host=env["DB_HOST"],
        port=int(env["DB_PORT"]),
        user=env["DB_USER"],
        password=env["DB_PASSWORD"],
        database=env["DB_NAME"],
        charset="utf8mb4",
        autocommit=autocommit,
    )
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return conn


def read_stack_env() -> dict[str, str]:
    if not STACK_ENV.exists():
        return {}
    pairs = (line.split("=", 1) for line in STACK_ENV.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


# --------------------------------------------------------------------------- commands


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


def up() -> dict[str, str]:
    cfg = LocalConfig.from_env()
    started = time.monotonic()
    STATE_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    ensure_mysql(cfg)
    had_state = (MINISTACK_STATE / "dynamodb.json").exists()
    restarted = ensure_ministack(cfg)
    ensure_opensearch(cfg)
    prepare_database(cfg)
    secret_arn = ensure_aws_resources(cfg)
    outputs = deploy(cfg, secret_arn)
    fix_event_source_mappings(cfg)
    values = write_stack_env(cfg, outputs, secret_arn)
    ensure_lambda_async_bridge(cfg, restart=True)
    if restarted:
        _say_whether_the_sinks_kept_up(cfg, had_state)
    say(f"up in {time.monotonic() - started:.0f}s; endpoints and names in {STACK_ENV.relative_to(ROOT)}:")
    for key in (
        "AWS_ENDPOINT_URL",
        "OPENSEARCH_ENDPOINT",
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
        "PARSER_FUNCTION_NAME",
        "FETCHER_FUNCTION_NAME",
        "DYNAMODB_TABLE",
        "DEAD_LETTER_QUEUE_URL",
    ):
        print(f"  {key}={values[key]}")
    return values


def _source_rows(cfg: LocalConfig) -> int:
    """Rows in the demo's source tables (MySQL keeps them across `make down`)."""
    import pymysql

    conn = pymysql.connect(
        host=cfg.db_host, port=cfg.db_port, user=cfg.db_user, password=cfg.db_password, database=cfg.db_name
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COALESCE(SUM(table_rows), 0) FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name IN ('posts', 'tenant_settings')",
                (cfg.db_name,),
            )
            (count,) = cur.fetchone()
            return int(count)
    finally:
        conn.close()


def _say_whether_the_sinks_kept_up(cfg: LocalConfig, had_state: bool) -> None:
    """ministack saves its state when it stops and loads it when it starts; killed, it saves nothing."""
    fix = "set -a; . .local/stack.env; set +a; .venv/bin/fanout reconcile --repair"
    if not had_state and _source_rows(cfg):
        say(f"ministack started without saved state while MySQL kept its rows: the sinks lack them. Fix: {fix}")
    elif had_state:
        say(
            f"ministack restored its state from {MINISTACK_STATE.relative_to(ROOT)} (saved when it stopped); "
            f"had it been killed instead, the sinks may lag MySQL: `fanout reconcile` shows it, this fixes it: {fix}"
        )


def restart(piece: str) -> None:
    """Restart one piece of a running stack, without a redeploy (its state and the others' are kept)."""
    cfg = LocalConfig.from_env()
    if piece == "bridge":
        ensure_lambda_async_bridge(cfg, restart=True)
    elif piece == "opensearch":
        stop_process("opensearch")
        ensure_opensearch(cfg)  # its data lives in .local/opensearch/data
    else:
        stop_process("ministack")  # SIGTERM: it saves its state first
        ensure_ministack(cfg)
        fix_event_source_mappings(cfg)
    say(f"restarted {piece}")


def down() -> None:
    for name in ("bridge", "opensearch", "ministack", "mysql"):
        if stop_process(name, timeout=60 if name == "mysql" else 10):
            say(f"stopped {name}")
    STACK_ENV.unlink(missing_ok=True)


def status() -> int:
    cfg = LocalConfig.from_env()
    ok = True
    for name in ("ministack", "opensearch", "bridge", "mysql"):
        pid = running_pid(name)
        ok &= pid is not None
        print(f"{name:10} {f'running (pid {pid})' if pid else 'stopped'}")
    db = port_open(cfg.db_port, cfg.db_host)
    print(f"{'database':10} {'reachable' if db else 'unreachable'} at {cfg.db_host}:{cfg.db_port}")
    return 0 if ok and db else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "restart"])
    parser.add_argument("piece", nargs="?", choices=["bridge", "ministack", "opensearch"], help="for restart")
    args = parser.parse_args(argv)
    if args.command == "restart":
        if args.piece is None:
            parser.error("restart needs the piece: bridge, ministack or opensearch")
        restart(args.piece)
        return 0
    if args.command == "up":
        up()
        return 0
    if args.command == "down":
        down()
        return 0
    return status()


if __name__ == "__main__":
    sys.exit(main())
