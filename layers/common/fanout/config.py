"""Configuration from the environment, validated once at cold start.

The same variable names are used locally and in AWS (see docs/architecture.md):
``AWS_ENDPOINT_URL`` is honoured by botocore itself (fanout.aws); everything else is read here.
A missing or malformed variable raises :class:`ConfigError` naming it, so a
misconfigured function fails loudly on its first invocation instead of
misbehaving later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from fanout import aws

# A secret read is reused this long; a refused login reads it again at once (DatabaseSettings.reread_from_env).
SECRET_MAX_AGE_SECONDS = 300
DEFAULT_TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600
# The domain's request limit (http.max_content_length): 10 MiB on the smaller Amazon OpenSearch Service
# instance types. Configurable as OPENSEARCH_MAX_REQUEST_BYTES.
DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES = 10 * 1024 * 1024
# How the DynamoDB sink writes a batch (DYNAMODB_BATCH_WRITES): TransactWriteItems (few requests, 2 write units a
# row per KB) or conditional PutItems in parallel (a request and 1 write unit a row per KB).
BATCH_TRANSACTIONS, BATCH_PUTS = "transactions", "puts"


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is required but not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


SecretFetcher = Callable[[str], Mapping[str, Any]]

# TLS to the database (DB_TLS): verify the server's certificate against DB_CA_BUNDLE and its host name, the
# chain only, or no TLS at all. Unset: off for a loopback host (the local stack), verify-identity for any other.
TLS_MODES = ("verify-identity", "verify-ca", "off")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Where the layer carries the RDS CA bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem,
# put there before `sam build`: docs/security.md); /opt/python/fanout/certs/ in Lambda.
BUNDLED_CA = Path(__file__).resolve().parent / "certs" / "rds-global-bundle.pem"


def _tls(env: Mapping[str, str], host: str) -> tuple[str, str]:
    default = "off" if host in LOOPBACK_HOSTS else "verify-identity"
    mode = env.get("DB_TLS", "").strip() or default
    if mode not in TLS_MODES:
        raise ConfigError(f"environment variable DB_TLS must be one of {', '.join(TLS_MODES)}, got {mode!r}")
    if mode == "off":
        return mode, ""
    bundle = env.get("DB_CA_BUNDLE", "").strip() or str(BUNDLED_CA)
    if not Path(bundle).is_file():
        raise ConfigError(
            f"DB_TLS={mode} needs the CA bundle that signed the database's certificate, but DB_CA_BUNDLE={bundle!r} "
            "is not a file (for Aurora: the RDS global bundle, "
            "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem; see docs/security.md)"
        )
    return mode, bundle


@cache
def secrets_provider() -> Any:
    """Powertools' Secrets Manager provider (and its cache of the secrets read), over a client of the functions'
    own botocore session (fanout.aws): its default provider built a boto3 session and client of its own, ~45 of
    the ~70 ms of CPU the first secret read added to a cold start (bench/results/cold_import.md)."""
    from aws_lambda_powertools.utilities import parameters  # lazy: only functions that use a secret pay for it

    return parameters.SecretsProvider(boto3_client=aws.client("secretsmanager"))


def fetch_secret_from_secrets_manager(secret_arn: str, *, force_fetch: bool = False) -> Mapping[str, Any]:
    """Read a Secrets Manager secret in the RDS format ({"username", "password", ...}) with Powertools
    Parameters: cached for SECRET_MAX_AGE_SECONDS, read from Secrets Manager again with ``force_fetch``."""
    text = secrets_provider().get(secret_arn, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    try:
        secret = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"secret {secret_arn} is not a JSON SecretString") from exc
    if not isinstance(secret, dict):
        raise ConfigError(f"secret {secret_arn} must hold a JSON object")
    return secret


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the source database is and how to log in.

    In AWS the credentials come from ``DB_SECRET_ARN`` (an RDS-format secret);
    locally and in tests ``DB_USER`` / ``DB_PASSWORD`` may be given instead.
    """

    host: str
    port: int
    name: str
    user: str
    password: str = ""
    connect_timeout: int = 5
    lock_wait_timeout: int = 5
    tls: str = "off"  # one of TLS_MODES; from_env chooses verify-identity for any host but loopback
    ca_bundle: str = ""  # PEM file of the CA(s) the server's certificate must chain to

    def __repr__(self) -> str:  # never print the password
        return (
            f"DatabaseSettings(host={self.host!r}, port={self.port}, name={self.name!r}, "
            f"user={self.user!r}, password=***, tls={self.tls!r})"
        )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        fetch_secret: SecretFetcher = fetch_secret_from_secrets_manager,
    ) -> DatabaseSettings:
        env = os.environ if env is None else env
        secret_arn = env.get("DB_SECRET_ARN", "").strip()
        if secret_arn:
            secret = fetch_secret(secret_arn)
            try:
                user, password = str(secret["username"]), str(secret["password"])
            except KeyError as exc:
                raise ConfigError(f"secret {secret_arn} has no {exc.args[0]!r} field") from None
        else:
            user = _required(env, "DB_USER")
            password = env.get("DB_PASSWORD", "")
        host = _required(env, "DB_HOST")
        port = _integer(env, "DB_PORT", 3306, minimum=1)
        name = _required(env, "DB_NAME")
        connect_timeout = _integer(env, "DB_CONNECT_TIMEOUT", 5, minimum=1)
        lock_wait_timeout = _integer(env, "DB_LOCK_WAIT_TIMEOUT", 5, minimum=1)
        tls, ca_bundle = _tls(env, host)
        return cls(
            host=host,
            port=port,
            name=name,
            user=user,
            password=password,
            connect_timeout=connect_timeout,
            lock_wait_timeout=lock_wait_timeout,
            tls=tls,
            ca_bundle=ca_bundle,
        )

    @classmethod
    def reread_from_env(cls) -> DatabaseSettings:
        """:meth:`from_env` with the secret read from Secrets Manager, not the cache: a login was refused,
        so the secret may have been rotated."""
        return cls.from_env(fetch_secret=partial(fetch_secret_from_secrets_manager, force_fetch=True))


@dataclass(frozen=True)
class HandoffSettings:
    """Where changes are handed to the fetcher (the fetch queue): the parser's changes, the fetcher's continuations."""

    fetch_queue_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandoffSettings:
        env = os.environ if env is None else env
        return cls(fetch_queue_url=_required(env, "FETCH_QUEUE_URL"))


@dataclass(frozen=True)
class ParserSettings:
    """What the parser needs: where to hand changes on, where to record rejects."""

    dead_letter_queue_url: str
    fetch_queue_url: str

    @property
    def handoff(self) -> HandoffSettings:
        return HandoffSettings(self.fetch_queue_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ParserSettings:
        env = os.environ if env is None else env
        return cls(
            dead_letter_queue_url=_required(env, "DEAD_LETTER_QUEUE_URL"),
            fetch_queue_url=HandoffSettings.from_env(env).fetch_queue_url,
        )


@dataclass(frozen=True)
class SweeperSettings:
    """What the sweeper needs beyond the database: the parser it rings when rows wait in the change log."""

    parser_function_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SweeperSettings:
        env = os.environ if env is None else env
        return cls(parser_function_name=_required(env, "PARSER_FUNCTION_NAME"))


@dataclass(frozen=True)
class SinkSettings:
    """Where the fetcher writes (and records what it must reject)."""

    opensearch_endpoint: str
    dynamodb_table: str
    dead_letter_queue_url: str
    opensearch_auth: str = "none"  # "none" locally, "sigv4" for Amazon OpenSearch Service
    tombstone_ttl_seconds: int = DEFAULT_TOMBSTONE_TTL_SECONDS
    # Other DynamoDB tables the fetcher was granted (stack parameter ExtraReplicaTableArns), by name.
    extra_dynamodb_tables: tuple[str, ...] = ()
    opensearch_max_request_bytes: int = DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES
    dynamodb_batch_writes: str = BATCH_TRANSACTIONS
    # The stack's EventBus (EVENT_BUS_NAME): where the tables whose mapping turns events on publish them.
    event_bus_name: str = ""

    @property
    def granted_dynamodb_tables(self) -> frozenset[str]:
        return frozenset((self.dynamodb_table, *self.extra_dynamodb_tables))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SinkSettings:
        env = os.environ if env is None else env
        auth = env.get("OPENSEARCH_AUTH", "none").strip() or "none"
        if auth not in ("none", "sigv4"):
            raise ConfigError(f"environment variable OPENSEARCH_AUTH must be 'none' or 'sigv4', got {auth!r}")
        batch_writes = env.get("DYNAMODB_BATCH_WRITES", "").strip() or BATCH_TRANSACTIONS
        if batch_writes not in (BATCH_TRANSACTIONS, BATCH_PUTS):
            raise ConfigError(
                f"environment variable DYNAMODB_BATCH_WRITES must be {BATCH_TRANSACTIONS!r} or {BATCH_PUTS!r}, "
                f"got {batch_writes!r}"
            )
        return cls(
            opensearch_endpoint=_required(env, "OPENSEARCH_ENDPOINT").rstrip("/"),
            dynamodb_table=_required(env, "DYNAMODB_TABLE"),
            dead_letter_queue_url=_required(env, "DEAD_LETTER_QUEUE_URL"),
            opensearch_auth=auth,
            tombstone_ttl_seconds=_integer(env, "TOMBSTONE_TTL_SECONDS", DEFAULT_TOMBSTONE_TTL_SECONDS, minimum=60),
            extra_dynamodb_tables=_table_names(env, "DYNAMODB_EXTRA_TABLE_ARNS"),
            opensearch_max_request_bytes=_integer(
                env, "OPENSEARCH_MAX_REQUEST_BYTES", DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES, minimum=1024
            ),
            dynamodb_batch_writes=batch_writes,
            event_bus_name=env.get("EVENT_BUS_NAME", "").strip(),
        )


def _table_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """DynamoDB table names from a comma-separated list of table ARNs (or names)."""
    names = []
    for entry in (e.strip() for e in env.get(name, "").split(",")):
        if not entry:
            continue
        if entry.startswith("arn:"):
            resource = entry.split(":", 5)[-1]
            if not resource.startswith("table/") or len(resource) <= len("table/"):
                raise ConfigError(f"environment variable {name}: {entry!r} is not a DynamoDB table ARN")
            entry = resource[len("table/") :]
        names.append(entry)
    return tuple(names)
