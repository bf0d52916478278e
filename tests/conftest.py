"""Shared test setup.

Fixtures start what a test needs or fail loudly; nothing is skipped:
- ``fresh_database``: a new, uniquely named MySQL 8.0 schema with the demo
  tables, dropped afterwards (the project's MySQL and its lambda_async bridge are started if they are down);
- ``opensearch_endpoint``: a real OpenSearch, ``$OPENSEARCH_ENDPOINT`` when
  set, else the local single-node OpenSearch (started by ``make up``'s code);
- ``local_aws``: ministack on loopback (started by the same code as `make up`);
- ``stack`` (tests/e2e/conftest.py): the whole local stack, deployed (``local/stack.py up``), as a typed ``Stack``.

Helpers the tests share are in tests/support/; ``pythonpath`` in pyproject.toml puts the repository root on
the path, so tests import ``tests.support.<module>``, ``local.<module>`` and ``db.hook``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout import aws, config

DB_HOST = os.environ.get("FANOUT_DB_HOST", "127.0.0.1")
DB_PORT = int(os.environ.get("FANOUT_DB_PORT", "3306"))
DB_USER = os.environ.get("FANOUT_DB_USER", "root")
DB_PASSWORD = os.environ.get("FANOUT_DB_PASSWORD", "")


@pytest.fixture(autouse=True)
def aws_session_per_test() -> Iterator[None]:
    """Each test's AWS clients read the environment the test sets. The functions build one botocore session per
    process (fanout.aws), as Lambda gives one set of credentials per execution environment; in one pytest process
    a session kept from an earlier test would sign with that test's credentials and region."""
    aws.session.cache_clear()
    config.secrets_provider.cache_clear()
    yield
    aws.session.cache_clear()
    config.secrets_provider.cache_clear()


@pytest.fixture(scope="session")
def mysql() -> dict[str, Any]:
    """Connection parameters of a running MySQL 8.0 with lambda_async (started if it is down)."""
    from local.config import LocalConfig
    from local.services import ensure_mysql

    ensure_mysql(LocalConfig.from_env())
    return {"host": DB_HOST, "port": DB_PORT, "user": DB_USER, "password": DB_PASSWORD}


@pytest.fixture
def fresh_database(mysql: dict[str, Any]) -> Iterator[str]:
    """A new schema holding the demo `posts` table; dropped after the test."""
    import pymysql

    from local.database import DEMO_SCHEMA, run_sql_file
    from tests.support.schemas import drop_database

    name = f"fanout_t_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(**mysql, charset="utf8mb4", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{name}`")
    run_sql_file(conn, DEMO_SCHEMA)
    try:
        yield name
    finally:
        drop_database(conn, name)
        conn.close()


@pytest.fixture
def db_settings(mysql: dict[str, Any], fresh_database: str) -> Any:
    from fanout.config import DatabaseSettings

    return DatabaseSettings(
        host=mysql["host"],
        port=mysql["port"],
        name=fresh_database,
        user=mysql["user"],
        password=mysql["password"],
        lock_wait_timeout=5,
    )


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, db_settings: Any) -> Any:
    """``db_settings`` as the environment the functions and the CLI read (DB_HOST, ...; no secret, no parser ARN)."""
    for key, value in {
        "DB_HOST": db_settings.host,
        "DB_PORT": str(db_settings.port),
        "DB_USER": db_settings.user,
        "DB_PASSWORD": db_settings.password,
        "DB_NAME": db_settings.name,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("DB_SECRET_ARN", "PARSER_FUNCTION_ARN"):
        monkeypatch.delenv(key, raising=False)
    return db_settings


@pytest.fixture(scope="session")
def opensearch_endpoint() -> str:
    """A real OpenSearch: ``$OPENSEARCH_ENDPOINT`` when set, else the local node (started by the same code as
    `make up`, left running like ministack)."""
    from local.config import LocalConfig
    from local.services import ensure_opensearch

    return ensure_opensearch(LocalConfig.from_env())


@pytest.fixture(scope="session")
def local_aws() -> dict[str, str]:
    """ministack on loopback; returns the AWS environment for clients."""
    from local.config import LocalConfig
    from local.services import ensure_ministack

    cfg = LocalConfig.from_env()
    ensure_ministack(cfg)
    return cfg.aws_env()


@pytest.fixture(scope="module")
def replica_table(local_aws: dict[str, str]) -> Iterator[Any]:
    """A DynamoDB table on ministack with the key schema and TTL template.yaml declares, for one test module."""
    from tests.support.integration import create_replica_table

    table = create_replica_table(local_aws)
    yield table
    table.delete()
