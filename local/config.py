"""Where the local stack lives and how it is reached: paths under .local/ and the ports and names from FANOUT_*."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from local import opensearch as local_opensearch

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"
RUN_DIR = STATE_DIR / "run"
LOG_DIR = STATE_DIR / "logs"
STACK_ENV = STATE_DIR / "stack.env"
MINISTACK_BIN = STATE_DIR / "ministack-venv" / "bin" / "ministack"
MINISTACK_STATE = STATE_DIR / "ministack-state"
# ministack unpacks every Lambda worker's code and layers under its TMPDIR and leaves them behind (tens of MB a
# cold start): kept here, emptied when it starts and when it stops, so a long session cannot fill /tmp.
MINISTACK_TMP = STATE_DIR / "ministack-tmp"
VENV_BIN = ROOT / ".venv" / "bin"


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


@dataclass(frozen=True)
class StackEnv:
    """What `make up` wrote to .local/stack.env: the endpoints and the deployed names, typed.

    The file is KEY=value lines (``set -a; . .local/stack.env`` configures the CLI); each field is its key in
    lower case.
    """

    aws_endpoint_url: str
    aws_access_key_id: str
    aws_secret_access_key: str
    aws_default_region: str
    aws_region: str
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    db_name: str
    db_tls: str
    opensearch_endpoint: str
    opensearch_auth: str
    db_secret_arn: str
    stack_name: str
    parser_function_arn: str
    parser_function_name: str
    fetcher_function_arn: str
    fetcher_function_name: str
    migrations_function_name: str
    sweeper_function_name: str
    maintenance_function_name: str
    aurora_invoke_role_arn: str
    dead_letter_queue_url: str
    fetch_queue_url: str
    dynamodb_table: str
    parser_log_group: str
    fetcher_log_group: str
    dashboard_name: str
    event_bus_name: str

    def environ(self) -> dict[str, str]:
        """The KEY=value pairs, as the file holds them and the functions and the CLI read them."""
        return {f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_environ(cls, values: dict[str, str]) -> StackEnv:
        missing = [f.name.upper() for f in fields(cls) if f.name.upper() not in values]
        if missing:
            raise SystemExit(f"[local] {STACK_ENV} lacks {', '.join(missing)}: run `make up` again")
        return cls(**{f.name: int(values[f.name.upper()]) if f.type == "int" else values[f.name.upper()]
                      for f in fields(cls)})  # fmt: skip

    def write(self) -> None:
        STACK_ENV.write_text("".join(f"{k}={v}\n" for k, v in self.environ().items()))

    @classmethod
    def read(cls) -> StackEnv | None:
        """The stack `make up` deployed, or None when it is not up (no .local/stack.env)."""
        if not STACK_ENV.exists():
            return None
        pairs = (line.split("=", 1) for line in STACK_ENV.read_text().splitlines() if "=" in line)
        return cls.from_environ({k: v for k, v in pairs})
