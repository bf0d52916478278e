"""TLS to the database, with certificate verification, against a real MariaDB.

The shared MariaDB has no TLS, so this module starts its own, non-shared
instance: a fresh data directory in a temporary directory, loopback only, on a
free port, with a throw-away CA and a server certificate issued for
``localhost`` (not for 127.0.0.1). It is stopped by its pid afterwards.

Connections are opened exactly as the functions open them: settings from the
environment (``DatabaseSettings.from_env``) and ``fanout.source.connection.connect``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.config import ConfigError, DatabaseSettings
from fanout.source.connection import connect

USER, PASSWORD, SCHEMA = "fanout_tls", "tls-test-password", "fanout_tls"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_ca_and_server_certificate(directory: Path, prefix: str, server_names: list[str]) -> Path:
    """A CA (``{prefix}ca.pem``) and a server certificate it signed for ``server_names``; returns the CA's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(subject: str, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate(f"{prefix}test CA", name(f"{prefix}test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        certificate(server_names[0], ca.subject, server_key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / f"{prefix}ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / f"{prefix}server.pem").write_bytes(server.public_bytes(pem))
    (directory / f"{prefix}server-key.pem").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    return directory / f"{prefix}ca.pem"


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A MariaDB of our own with TLS on, a user that must use it, and the CA that signed its certificate."""
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    install = shutil.which("mariadb-install-db")
    assert install and Path(mariadbd).exists(), "MariaDB server binaries are needed for the TLS test"
    base = tmp_path_factory.mktemp("tls-mariadb")
    ca = write_ca_and_server_certificate(base, "", ["localhost"])
    other_ca = write_ca_and_server_certificate(base, "other-", ["localhost"])  # a CA that signed nothing of this server
    subprocess.run(
        [install, "--no-defaults", f"--datadir={base / 'data'}", "--user=root", "--skip-test-db"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            mariadbd,
            "--no-defaults",
            f"--datadir={base / 'data'}",
            f"--socket={base / 'mysqld.sock'}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--log-error={base / 'error.log'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=16M",
            f"--ssl-ca={ca}",
            f"--ssl-cert={base / 'server.pem'}",
            f"--ssl-key={base / 'server-key.pem'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        admin = None
        deadline = time.monotonic() + 60
        while admin is None:
            try:
                admin = pymysql.connect(unix_socket=str(base / "mysqld.sock"), user="root", autocommit=True)
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log = (base / "error.log").read_text(errors="replace")[-2000:]
                    raise AssertionError(f"the TLS MariaDB did not start:\n{log}") from None
                time.sleep(0.2)
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{SCHEMA}`")
            cur.execute(f"CREATE USER '{USER}'@'%%' IDENTIFIED BY %s REQUIRE SSL", (PASSWORD,))
            cur.execute(f"GRANT SELECT ON `{SCHEMA}`.* TO '{USER}'@'%'")
        admin.close()
        yield {"port": port, "ca": str(ca), "other_ca": str(other_ca)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def settings_from_env(db: dict[str, Any], host: str, **env: str) -> DatabaseSettings:
    base = {"DB_HOST": host, "DB_PORT": str(db["port"]), "DB_NAME": SCHEMA, "DB_USER": USER, "DB_PASSWORD": PASSWORD}
    return DatabaseSettings.from_env(base | env)


def session_tls(conn: pymysql.connections.Connection) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        return str(cur.fetchone()[1])


def test_verify_identity_connects_over_tls_to_the_name_on_the_certificate(tls_mariadb: dict[str, Any]) -> None:
    # Given the functions' settings for a server whose certificate names "localhost"
    settings = settings_from_env(tls_mariadb, "localhost", DB_TLS="verify-identity", DB_CA_BUNDLE=tls_mariadb["ca"])

    # When
    conn = connect(settings)

    # Then the session is encrypted (the user is REQUIRE SSL: the server agrees)
    try:
        assert session_tls(conn).startswith("TLSv1.")
    finally:
        conn.close()


def test_tls_is_verify_identity_by_default_for_a_database_that_is_not_on_loopback(tls_mariadb: dict[str, Any]) -> None:
    settings = settings_from_env(tls_mariadb, "localhost.", DB_CA_BUNDLE=tls_mariadb["ca"])  # FQDN form: not loopback

    assert (settings.tls, settings.ca_bundle) == ("verify-identity", tls_mariadb["ca"])


def test_verify_identity_refuses_a_host_name_the_certificate_does_not_name(tls_mariadb: dict[str, Any]) -> None:
    # Given the same server reached as 127.0.0.1, which its certificate does not name (a DNS alias would be the same)
    settings = settings_from_env(tls_mariadb, "127.0.0.1", DB_TLS="verify-identity", DB_CA_BUNDLE=tls_mariadb["ca"])

    # When / Then
    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(settings)
    assert "doesn't match" in str(refused.value) or "mismatch" in str(refused.value).lower()

    # while verify-ca (the chain only) accepts it, still encrypted
    conn = connect(settings_from_env(tls_mariadb, "127.0.0.1", DB_TLS="verify-ca", DB_CA_BUNDLE=tls_mariadb["ca"]))
    try:
        assert session_tls(conn).startswith("TLSv1.")
    finally:
        conn.close()


def test_a_certificate_from_another_ca_is_refused(tls_mariadb: dict[str, Any]) -> None:
    # Given a bundle that does not hold the CA that signed the server's certificate (an impostor's view)
    settings = settings_from_env(tls_mariadb, "localhost", DB_TLS="verify-ca", DB_CA_BUNDLE=tls_mariadb["other_ca"])

    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(settings)

    assert "certificate verify failed" in str(refused.value)


def test_a_server_without_tls_is_refused_not_used_in_clear(
    mysql: dict[str, Any], tls_mariadb: dict[str, Any]
) -> None:
    # Given the shared MariaDB, which offers no TLS (what a downgrading man in the middle would look like)
    settings = DatabaseSettings(
        host=mysql["host"],
        port=mysql["port"],
        name="mysql",
        user=mysql["user"],
        password=mysql["password"],
        tls="verify-ca",
        ca_bundle=tls_mariadb["ca"],
    )

    # When / Then the client refuses before it sends any credential
    with pytest.raises(pymysql.err.OperationalError, match="SSL is required"):
        connect(settings)


def test_without_tls_a_user_that_requires_it_is_refused_by_the_server(tls_mariadb: dict[str, Any]) -> None:
    # (what `REQUIRE SSL` on the fanout user, or require_secure_transport on the cluster, adds: docs/security.md)
    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(settings_from_env(tls_mariadb, "localhost", DB_TLS="off"))

    assert refused.value.args[0] == 1045


def test_a_missing_ca_bundle_stops_the_function_at_cold_start(tls_mariadb: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DB_CA_BUNDLE"):
        settings_from_env(tls_mariadb, "localhost", DB_TLS="verify-identity", DB_CA_BUNDLE=str(tmp_path / "absent.pem"))
