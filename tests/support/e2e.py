"""The deployed local stack as the e2e tests see it: one typed ``Stack`` (the ``stack`` fixture,
tests/e2e/conftest.py) and what the modules share to write rows, wait for them and compare them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.model.sink_keys import dynamodb_key
from fanout.operations.verify import RowComparison, compare_row, fetch_sink_state
from fanout.sinks.opensearch import make_client
from local.config import LocalConfig, StackEnv
from local.database import source_connection
from local.lambda_async.bridge import Control
from tests.support.aws import aws_client, aws_resource

MAPPINGS = default_mappings()


def post(key: int) -> Change:
    """The change that names a ``posts`` row (comparisons need only its table and key)."""
    return Change("posts", (("id", key),), "update", 0)


def setting(tenant: str, setting_key: str) -> Change:
    return Change("tenant_settings", (("tenant", tenant), ("setting_key", setting_key)), "update", 0)


def article(key: int) -> Change:
    return Change("articles", (("id", key),), "update", 0)


@dataclass
class Stack:
    """The app deployed on the local stack: its stack.env (typed), an application session and the sinks."""

    env: StackEnv
    db: Any  # an autocommit application session on the stack's database
    opensearch: Any
    table: Any  # the stack's DynamoDB ReplicaTable
    lambda_client: Any
    bridge: Control  # the lambda_async bridge: what Aurora's native function calls (per-ARN faults and delays)

    @classmethod
    def connect(cls, env: StackEnv) -> Stack:
        return cls(
            env=env,
            db=source_connection(env),
            opensearch=make_client(env.opensearch_endpoint),
            table=aws_resource(env.environ(), "dynamodb").Table(env.dynamodb_table),
            lambda_client=aws_client(env.environ(), "lambda"),
            bridge=Control(LocalConfig.from_env().lambda_async_port),
        )

    def close(self) -> None:
        self.db.close()

    def client(self, service: str) -> Any:
        return aws_client(self.env.environ(), service)

    def connection(self, *, autocommit: bool = True) -> Any:
        """A new application session (the caller closes it)."""
        return source_connection(self.env, autocommit=autocommit)

    def sql(self, statement: str, *params: Any) -> int:
        """One statement on the stack's session; its LAST_INSERT_ID (0 if none)."""
        with self.db.cursor() as cur:
            cur.execute(statement, params)
            return int(cur.lastrowid or 0)

    def invoke(self, function_name: str, event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """A synchronous invoke of a deployed function: (the response, its decoded payload)."""
        response = self.lambda_client.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        return response, json.loads(response["Payload"].read())

    def state(self, change: Change) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """What OpenSearch (``_source``) and DynamoDB (the item) hold for the change's key (None: nothing)."""
        return fetch_sink_state(MAPPINGS.tables[change.table], change, self.opensearch, lambda _: self.table)

    def document(self, change: Change) -> dict[str, Any] | None:
        return self.state(change)[0]

    def item(self, change: Change) -> dict[str, Any] | None:
        key = dynamodb_key(MAPPINGS.tables[change.table], change)
        return self.table.get_item(Key=key, ConsistentRead=True).get("Item")

    def agreed(self, change: Change) -> RowComparison | None:
        """The comparison of source and sinks for the change's key when they agree, else None (for wait_until)."""
        comparison = compare_row(self.db, MAPPINGS.tables[change.table], change, self.opensearch, self.table)
        return comparison if comparison.agrees else None
