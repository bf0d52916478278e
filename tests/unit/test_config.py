"""Settings from the environment: validated at cold start, errors name the variable, secrets stay secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fanout.config import ConfigError, DatabaseSettings, SinkSettings

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fanout-db-AbCdEf"
PASSWORD = "s3cr3t-p@ss"
# (DB_TLS: a host that is not loopback gets verified TLS by default; test_database_tls_settings.py covers it)
DB_ENV = {
    "DB_HOST": "db.internal",
    "DB_NAME": "fanout_demo",
    "DB_USER": "fetcher",
    "DB_PASSWORD": PASSWORD,
    "DB_TLS": "off",
}


class FakeSecrets:
    """A Secrets Manager stand-in: RDS-format secrets by ARN, and a log of what was asked."""

    def __init__(self, secrets: Mapping[str, Mapping[str, Any]]) -> None:
        self.secrets = secrets
        self.requested: list[str] = []

    def __call__(self, arn: str) -> Mapping[str, Any]:
        self.requested.append(arn)
        return self.secrets[arn]


def test_database_settings_from_explicit_user_and_password() -> None:
    settings = DatabaseSettings.from_env({**DB_ENV, "DB_PORT": "3307", "DB_LOCK_WAIT_TIMEOUT": "9"})

    assert (settings.host, settings.port, settings.name) == ("db.internal", 3307, "fanout_demo")
    assert (settings.user, settings.password) == ("fetcher", PASSWORD)
    assert (settings.connect_timeout, settings.lock_wait_timeout) == (5, 9)


def test_database_settings_default_the_port_and_allow_an_empty_password() -> None:
    settings = DatabaseSettings.from_env(
        {"DB_HOST": " db.internal ", "DB_NAME": "fanout_demo", "DB_USER": "root", "DB_TLS": "off"}
    )

    assert (settings.host, settings.port, settings.password) == ("db.internal", 3306, "")


def test_database_credentials_come_from_the_secret_when_one_is_named() -> None:
    # Given a secret ARN, and user/password variables that must not win over it
    secrets = FakeSecrets({SECRET_ARN: {"username": "admin", "password": PASSWORD, "engine": "mysql"}})
    env = {**DB_ENV, "DB_USER": "ignored", "DB_PASSWORD": "ignored", "DB_SECRET_ARN": SECRET_ARN}

    # When
    settings = DatabaseSettings.from_env(env, fetch_secret=secrets)

    # Then
    assert secrets.requested == [SECRET_ARN]
    assert (settings.user, settings.password) == ("admin", PASSWORD)


@pytest.mark.parametrize("missing", ["username", "password"])
def test_a_secret_without_credentials_is_a_config_error_naming_the_field(missing: str) -> None:
    secret = {"username": "admin", "password": PASSWORD}
    del secret[missing]

    secrets = FakeSecrets({SECRET_ARN: secret})

    with pytest.raises(ConfigError, match=f"'{missing}'"):
        DatabaseSettings.from_env({**DB_ENV, "DB_SECRET_ARN": SECRET_ARN}, fetch_secret=secrets)


@pytest.mark.parametrize("missing", ["DB_HOST", "DB_NAME", "DB_USER"])
def test_a_missing_required_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in DB_ENV.items() if k != missing}

    with pytest.raises(ConfigError, match=missing):
        DatabaseSettings.from_env(env)


def test_a_blank_variable_counts_as_missing() -> None:
    with pytest.raises(ConfigError, match="DB_HOST"):
        DatabaseSettings.from_env({**DB_ENV, "DB_HOST": "   "})


@pytest.mark.parametrize(
    ("name", "value"),
    [("DB_PORT", "mysql"), ("DB_PORT", "3306.0"), ("DB_PORT", "0"), ("DB_CONNECT_TIMEOUT", "-1")],
)
def test_a_malformed_integer_is_a_config_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        DatabaseSettings.from_env({**DB_ENV, name: value})

    assert value in str(caught.value)


def test_the_password_never_appears_in_repr_or_str() -> None:
    settings = DatabaseSettings.from_env(DB_ENV)

    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert PASSWORD not in f"{settings!r} {[settings]}"
    assert "password=***" in repr(settings)


SINK_ENV = {
    "OPENSEARCH_ENDPOINT": "https://search.example.com/",
    "DYNAMODB_TABLE": "fanout-replica",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/fanout-dlq",
}


def test_sink_settings_defaults() -> None:
    settings = SinkSettings.from_env(SINK_ENV)

    assert settings.opensearch_endpoint == "https://search.example.com"  # trailing slash dropped
    assert settings.dynamodb_table == "fanout-replica"
    assert settings.opensearch_auth == "none"
    assert settings.tombstone_ttl_seconds == 7 * 24 * 3600
    assert settings.dynamodb_batch_writes == "transactions"


def test_the_dynamodb_batch_form_is_one_of_two() -> None:
    assert SinkSettings.from_env({**SINK_ENV, "DYNAMODB_BATCH_WRITES": "puts"}).dynamodb_batch_writes == "puts"
    with pytest.raises(ConfigError, match="DYNAMODB_BATCH_WRITES") as caught:
        SinkSettings.from_env({**SINK_ENV, "DYNAMODB_BATCH_WRITES": "partiql"})
    assert "'partiql'" in str(caught.value)


@pytest.mark.parametrize("auth", ["none", "sigv4"])
def test_sink_settings_accept_the_supported_auth_modes(auth: str) -> None:
    assert SinkSettings.from_env({**SINK_ENV, "OPENSEARCH_AUTH": auth}).opensearch_auth == auth


@pytest.mark.parametrize("auth", ["basic", "SIGV4", "iam"])
def test_sink_settings_reject_other_auth_modes(auth: str) -> None:
    with pytest.raises(ConfigError, match="OPENSEARCH_AUTH") as caught:
        SinkSettings.from_env({**SINK_ENV, "OPENSEARCH_AUTH": auth})

    assert repr(auth) in str(caught.value)


@pytest.mark.parametrize("missing", ["OPENSEARCH_ENDPOINT", "DYNAMODB_TABLE"])
def test_sink_settings_name_a_missing_variable(missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        SinkSettings.from_env({k: v for k, v in SINK_ENV.items() if k != missing})


def test_a_tombstone_ttl_under_a_minute_is_refused() -> None:
    with pytest.raises(ConfigError, match="TOMBSTONE_TTL_SECONDS"):
        SinkSettings.from_env({**SINK_ENV, "TOMBSTONE_TTL_SECONDS": "59"})


class FakeSecretsManagerClient:
    """The one Secrets Manager call Powertools' SecretsProvider makes, answering the current secret value."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.calls = 0

    def get_secret_value(self, **request: Any) -> dict[str, Any]:
        assert request == {"SecretId": SECRET_ARN}
        self.calls += 1
        return {"SecretString": f'{{"username": "admin", "password": "{self.password}"}}'}


def test_the_secret_is_cached_and_a_refused_login_reads_it_past_the_cache(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Given Powertools' secrets provider over a Secrets Manager that answers the first password
    from fanout import aws
    from fanout.config import secrets_provider

    client = FakeSecretsManagerClient("first")
    monkeypatch.setattr(aws, "client", lambda service, config=None: client if service == "secretsmanager" else None)
    secrets_provider.cache_clear()
    request.addfinalizer(secrets_provider.cache_clear)
    env = {k: v for k, v in DB_ENV.items() if k not in ("DB_USER", "DB_PASSWORD")}
    for name, value in {**env, "DB_SECRET_ARN": SECRET_ARN}.items():
        monkeypatch.setenv(name, value)

    # When the settings are read twice, the secret is rotated, and a refused login reads them again
    first = DatabaseSettings.from_env()
    again = DatabaseSettings.from_env()
    client.password = "second"
    cached = DatabaseSettings.from_env()
    reread = DatabaseSettings.reread_from_env()

    # Then Secrets Manager was asked once until the re-read, which asked it again and got the new password
    assert [s.password for s in (first, again, cached, reread)] == ["first", "first", "first", "second"]
    assert client.calls == 2
