"""DB_TLS / DB_CA_BUNDLE: TLS to the database is on, and verified, unless the database is on loopback.

tests/integration/test_database_tls.py shows the same settings against a real MySQL 8.0 with TLS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.config import BUNDLED_CA, ConfigError, DatabaseSettings
from fanout.source.connection import tls_options

BASE = {"DB_NAME": "app", "DB_USER": "fanout", "DB_PASSWORD": "pw"}


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_a_loopback_database_needs_no_tls(host: str) -> None:
    assert DatabaseSettings.from_env(BASE | {"DB_HOST": host}).tls == "off"


def test_any_other_database_gets_tls_verified_against_the_bundle_and_its_name(bundle: str) -> None:
    env = BASE | {"DB_HOST": "app.cluster-abc.eu-west-1.rds.amazonaws.com", "DB_CA_BUNDLE": bundle}

    settings = DatabaseSettings.from_env(env)

    assert (settings.tls, settings.ca_bundle) == ("verify-identity", bundle)
    assert tls_options(settings) == {"ssl_ca": bundle, "ssl_verify_cert": True, "ssl_verify_identity": True}


def test_verify_ca_checks_the_chain_but_not_the_name(bundle: str) -> None:
    settings = DatabaseSettings.from_env(
        BASE | {"DB_HOST": "db.internal", "DB_TLS": "verify-ca", "DB_CA_BUNDLE": bundle}
    )

    assert tls_options(settings) == {"ssl_ca": bundle, "ssl_verify_cert": True, "ssl_verify_identity": False}


def test_off_means_no_tls_at_all_not_an_unverified_attempt() -> None:
    settings = DatabaseSettings.from_env(BASE | {"DB_HOST": "db.internal", "DB_TLS": "off"})

    assert tls_options(settings) == {"ssl_disabled": True}


def test_without_a_bundle_the_function_stops_at_cold_start_saying_where_to_get_one(tmp_path: Path) -> None:
    env = BASE | {"DB_HOST": "db.internal", "DB_CA_BUNDLE": str(tmp_path / "missing.pem")}

    with pytest.raises(ConfigError, match=r"DB_CA_BUNDLE=.*truststore\.pki\.rds\.amazonaws\.com"):
        DatabaseSettings.from_env(env)


def test_the_default_bundle_is_the_one_the_layer_carries() -> None:
    assert BUNDLED_CA.parts[-3:] == ("fanout", "certs", "rds-global-bundle.pem")
    assert (BUNDLED_CA.parent / "README.md").is_file()  # which says where the bundle comes from


def test_an_unknown_tls_mode_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="DB_TLS"):
        DatabaseSettings.from_env(BASE | {"DB_HOST": "db.internal", "DB_TLS": "required"})


def test_the_settings_never_print_the_password(bundle: str) -> None:
    settings = DatabaseSettings.from_env(BASE | {"DB_HOST": "db.internal", "DB_CA_BUNDLE": bundle})

    assert "pw" not in repr(settings) and "verify-identity" in repr(settings)
