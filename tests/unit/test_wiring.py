"""One wiring of the fetch path (fanout.pipeline.wiring): the fetcher and the maintenance function build it alike."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from fanout import aws
from fanout.model.mapping import MappingError, default_mappings
from fanout.operations.maintenance import Maintenance
from fanout.pipeline.fetch_queue import QueueForwarder
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import QueueRejectRecorder
from fanout.source.reader import DatabaseSource
from tests.support.fakes import load_app

ENV = {
    "DB_HOST": "db.internal",
    "DB_NAME": "fanout",
    "DB_USER": "fetcher",
    "DB_TLS": "off",
    "OPENSEARCH_ENDPOINT": "http://opensearch.internal:9200",
    "DYNAMODB_TABLE": "fanout-replica",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/fanout-dlq",
    "FETCH_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/fanout-fetch",  # for continuations
    "EVENT_BUS_NAME": "fanout-changes",  # the stack's EventBus
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


class RecordingBuilder:
    """fanout.aws.client / boto3.resource, each call's service and botocore Config noted (the real object is
    built, which opens no connection)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.configs: dict[str, Any] = {}
        self.built: list[str] = []

    def __call__(self, service: str, *args: Any, **kwargs: Any) -> Any:
        self.configs[service] = kwargs.get("config")
        self.built.append(service)
        return self.real(service, *args, **kwargs)


def fail_fast(config: Any) -> tuple[Any, ...]:
    assert config is not None, "built without the fetch path's botocore Config"
    return config.connect_timeout, config.read_timeout, config.retries


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the fetcher and maintenance functions run in, and the mapping read afresh."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("DB_SECRET_ARN", "DYNAMODB_EXTRA_TABLE_ARNS", "OPENSEARCH_AUTH", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    default_mappings.cache_clear()


@pytest.mark.usefixtures("function_env")
def test_the_fetcher_and_the_maintenance_function_build_their_aws_clients_with_the_same_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the environment both functions run in (function_env), and fanout.aws and boto3 noting how each client
    # is built
    built: dict[str, RecordingBuilder] = {}
    for role in ("fetcher", "maintenance"):
        clients, resources = RecordingBuilder(aws.client), RecordingBuilder(boto3.resource)
        monkeypatch.setattr(aws, "client", clients)
        monkeypatch.setattr(boto3, "resource", resources)
        # When each builds its fetch path
        if role == "fetcher":
            app = load_app("fetcher_fn/app.py", "fetcher_app_wiring")
            app._fetcher()
            app._fetcher.cache_clear()
        else:
            Maintenance(source="maintenance").close()
        built[role] = clients
        built[role + " resources"] = resources
        monkeypatch.setattr(aws, "client", clients.real)
        monkeypatch.setattr(boto3, "resource", resources.real)

    # Then DynamoDB, the event bus and the dead-letter queue get the same fail-fast Config in both (and the
    # DynamoDB resource reconcile reads through, built by maintenance only: the fetcher never reads items)
    assert "dynamodb" not in built["fetcher resources"].configs
    built_with = [fail_fast(built["maintenance resources"].configs["dynamodb"])] + [
        fail_fast(built[role].configs[service])
        for role in ("fetcher", "maintenance")
        for service in ("sqs", "events", "dynamodb")
    ]
    assert all(config == built_with[0] for config in built_with)
    connect_timeout, read_timeout, retries = built_with[0]
    assert (connect_timeout, read_timeout, retries) == (5, 5, {"mode": "standard", "total_max_attempts": 3})
    # and the fetcher builds one client per service: its dead-letter queue and its continuations share one SQS client
    assert sorted(built["fetcher"].built) == ["dynamodb", "events", "sqs"]


@pytest.mark.usefixtures("function_env")
def test_the_fetcher_and_maintenance_each_get_one_fetcher_and_only_the_fetchers_hands_continuations_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the environment both functions run in (function_env)
    app = load_app("fetcher_fn/app.py", "fetcher_app_one_object")
    # When each builds its fetch path
    try:
        fetcher = app._fetcher()
    finally:
        app._fetcher.cache_clear()
    maintenance = Maintenance(source="maintenance")
    maintenance.close()
    # Then each is one Fetcher over the database, both sinks and the dead-letter queue's recorder
    for built in (fetcher, maintenance.fetch.fetcher):
        assert isinstance(built, Fetcher)
        assert isinstance(built.source, DatabaseSource)
        assert [sink.name for sink in built.sinks] == ["opensearch", "dynamodb", "eventbridge"]
        assert isinstance(built.reject, QueueRejectRecorder)
    # and only the fetcher's hands a composed document's remaining roots on to the fetch queue
    assert isinstance(fetcher.fan_out.continuations, QueueForwarder)
    assert maintenance.fetch.fetcher.fan_out.continuations is None


@pytest.mark.usefixtures("function_env")
def test_a_backfill_leaves_the_event_bus_out_unless_asked_and_refuses_to_publish_without_a_bus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    maintenance = Maintenance(source="backfill")
    maintenance.close()
    assert [sink.name for sink in maintenance.fetch.without_events().sinks] == ["opensearch", "dynamodb"]
    maintenance.fetch.require_events()  # the bundled mapping publishes posts' events, and there is a bus

    monkeypatch.delenv("EVENT_BUS_NAME")
    without_bus = Maintenance(source="backfill")
    without_bus.close()
    assert [sink.name for sink in without_bus.fetch.fetcher.sinks] == ["opensearch", "dynamodb"]
    with pytest.raises(MappingError, match="field 'eventbridge.enabled'.*EVENT_BUS_NAME"):
        without_bus.fetch.require_events()
