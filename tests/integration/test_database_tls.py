"""TLS to the database, with certificate verification, against a real MySQL 8.0.

The shared MySQL's TLS certificate is the self-signed one mysqld generates, naming no host, so this
module starts its own, non-shared server from the same binaries (local/mysql.py): a fresh data
directory in a temporary directory, loopback only, on a free port, with a throw-away CA and a server
certificate issued for ``localhost`` (not for 127.0.0.1), and a user that must use TLS (``REQUIRE SSL``).
It is stopped by its pid afterwards. A server that offers no TLS is that server seen through a man in
the middle who strips TLS from its greeting (:class:`Downgrader`).

Connections are opened exactly as the functions open them: settings from the
environment (``DatabaseSettings.from_env``) and ``fanout.source.connection.connect``.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.config import ConfigError, DatabaseSettings
from fanout.source.connection import connect
from local import mysql as local_mysql

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


def start_mysqld(base: Path, ca: Path) -> tuple[subprocess.Popen[bytes], int]:
    """mysqld of the local stack's build on a fresh data directory under ``base``, with the given CA and the
    server certificate beside it; returns the process and its port once root can log in on the socket."""
    home = local_mysql.fetch()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TZ": "UTC",
        "LD_LIBRARY_PATH": str(home / "lib" / "private"),
    }
    mysqld = str(home / "bin" / "mysqld")
    common = ["--no-defaults", "--user=root", f"--basedir={home}", f"--datadir={base / 'data'}"]
    subprocess.run([mysqld, *common, "--initialize-insecure"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen(
        [
            mysqld,
            *common,
            f"--socket={base / 'mysqld.sock'}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--log-error={base / 'error.log'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--mysqlx=OFF",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=16M",
            f"--ssl-ca={ca}",
            f"--ssl-cert={base / 'server.pem'}",
            f"--ssl-key={base / 'server-key.pem'}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            pymysql.connect(unix_socket=str(base / "mysqld.sock"), user="root").close()
            return server, port
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline or server.poll() is not None:
                stop(server)
                log = (base / "error.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"the TLS MySQL did not start:\n{log}") from None
            time.sleep(0.2)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_mysql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A MySQL 8.0 of our own with our certificate, a user that must use TLS, and the CA that signed it."""
    base = tmp_path_factory.mktemp("tls-mysql")
    ca = write_ca_and_server_certificate(base, "", ["localhost"])
    other_ca = write_ca_and_server_certificate(base, "other-", ["localhost"])  # a CA that signed nothing of this server
    server, port = start_mysqld(base, ca)
    try:
        admin = pymysql.connect(unix_socket=str(base / "mysqld.sock"), user="root", autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{SCHEMA}`")
                cur.execute(f"CREATE USER '{USER}'@'%%' IDENTIFIED BY %s REQUIRE SSL", (PASSWORD,))
                cur.execute(f"GRANT SELECT ON `{SCHEMA}`.* TO '{USER}'@'%'")
        finally:
            admin.close()
        yield {"port": port, "ca": str(ca), "other_ca": str(other_ca)}
    finally:
        stop(server)


CLIENT_SSL = 0x0800  # the capability bit a MySQL server's greeting offers TLS with


class Downgrader:
    """A man in the middle on loopback who relays to ``port`` but clears the TLS offer from the server's
    greeting, and keeps every byte the client sent: what a client that did not insist on TLS would give away."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.from_client = bytearray()
        self.thread = threading.Thread(target=self._serve_one, daemon=True)
        self.thread.start()

    def _serve_one(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:  # closed before the client came
            return
        with client, socket.create_connection(("127.0.0.1", self.upstream)) as server:
            header = server.recv(4, socket.MSG_WAITALL)
            greeting = bytearray(server.recv(int.from_bytes(header[:3], "little"), socket.MSG_WAITALL))
            flags_at = greeting.index(0, 1) + 1 + 4 + 8 + 1  # version, NUL, connection id, scramble, filler
            flags = int.from_bytes(greeting[flags_at : flags_at + 2], "little") & ~CLIENT_SSL
            greeting[flags_at : flags_at + 2] = flags.to_bytes(2, "little")
            client.sendall(header + greeting)
            client.settimeout(10)
            try:
                while chunk := client.recv(65536):
                    self.from_client += chunk
                    server.sendall(chunk)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=15)


def settings_from_env(db: dict[str, Any], host: str, **env: str) -> DatabaseSettings:
    base = {"DB_HOST": host, "DB_PORT": str(db["port"]), "DB_NAME": SCHEMA, "DB_USER": USER, "DB_PASSWORD": PASSWORD}
    return DatabaseSettings.from_env(base | env)


def session_tls(conn: pymysql.connections.Connection) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        return str(cur.fetchone()[1])


def test_verify_identity_connects_over_tls_to_the_name_on_the_certificate(tls_mysql: dict[str, Any]) -> None:
    # Given the functions' settings for a server whose certificate names "localhost"
    settings = settings_from_env(tls_mysql, "localhost", DB_TLS="verify-identity", DB_CA_BUNDLE=tls_mysql["ca"])

    # When
    conn = connect(settings)

    # Then the session is encrypted (the user is REQUIRE SSL: the server agrees)
    try:
        assert session_tls(conn).startswith("TLSv1.")
    finally:
        conn.close()


def test_tls_is_verify_identity_by_default_for_a_database_that_is_not_on_loopback(tls_mysql: dict[str, Any]) -> None:
    settings = settings_from_env(tls_mysql, "localhost.", DB_CA_BUNDLE=tls_mysql["ca"])  # FQDN form: not loopback

    assert (settings.tls, settings.ca_bundle) == ("verify-identity", tls_mysql["ca"])


def test_verify_identity_refuses_a_host_name_the_certificate_does_not_name(tls_mysql: dict[str, Any]) -> None:
    # Given the same server reached as 127.0.0.1, which its certificate does not name (a DNS alias would be the same)
    settings = settings_from_env(tls_mysql, "127.0.0.1", DB_TLS="verify-identity", DB_CA_BUNDLE=tls_mysql["ca"])

    # When / Then
    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(settings)
    assert "doesn't match" in str(refused.value) or "mismatch" in str(refused.value).lower()

    # while verify-ca (the chain only) accepts it, still encrypted
    conn = connect(settings_from_env(tls_mysql, "127.0.0.1", DB_TLS="verify-ca", DB_CA_BUNDLE=tls_mysql["ca"]))
    try:
        assert session_tls(conn).startswith("TLSv1.")
    finally:
        conn.close()


def test_a_certificate_from_another_ca_is_refused(tls_mysql: dict[str, Any]) -> None:
    # Given a bundle that does not hold the CA that signed the server's certificate (an impostor's view)
    settings = settings_from_env(tls_mysql, "localhost", DB_TLS="verify-ca", DB_CA_BUNDLE=tls_mysql["other_ca"])

    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(settings)

    assert "certificate verify failed" in str(refused.value)


def test_a_server_without_tls_is_refused_not_used_in_clear(tls_mysql: dict[str, Any]) -> None:
    # Given the server seen through a man in the middle who strips TLS from its greeting
    downgrader = Downgrader(tls_mysql["port"])
    settings = settings_from_env(
        {"port": downgrader.port}, "localhost", DB_TLS="verify-ca", DB_CA_BUNDLE=tls_mysql["ca"]
    )

    # When / Then the client refuses before it sends anything, the credentials least of all
    try:
        with pytest.raises(pymysql.err.OperationalError, match="SSL is required"):
            connect(settings)
    finally:
        downgrader.close()
    assert downgrader.from_client == b""


def test_without_tls_a_user_that_requires_it_is_refused_by_the_server(tls_mysql: dict[str, Any]) -> None:
    # (what `REQUIRE SSL` on the fanout user, or require_secure_transport on the cluster, adds: docs/security.md)
    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(settings_from_env(tls_mysql, "localhost", DB_TLS="off"))

    assert refused.value.args[0] == 1045


def test_a_missing_ca_bundle_stops_the_function_at_cold_start(tls_mysql: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DB_CA_BUNDLE"):
        settings_from_env(tls_mysql, "localhost", DB_TLS="verify-identity", DB_CA_BUNDLE=str(tmp_path / "absent.pem"))
