"""The local OpenSearch node's set-up (local/opensearch.py): what it needs, said clearly when missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local import opensearch as local_opensearch


def test_without_java_it_says_what_to_install_or_where_to_point_instead(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a machine with no Java anywhere the node looks
    monkeypatch.delenv("OPENSEARCH_JAVA_HOME", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    # When the node's Java is looked for, Then the message names the fix
    with pytest.raises(local_opensearch.OpenSearchUnavailable, match="needs Java 11 to 21") as raised:
        local_opensearch.java_home()
    assert "openjdk-17" in str(raised.value) and "OPENSEARCH_ENDPOINT" in str(raised.value)


def test_a_java_outside_the_supported_range_is_not_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given only a Java 25 (as the newer Temurin JDK beside the default one), which OpenSearch 2.19 does not run on
    fake = tmp_path / "jdk25"
    (fake / "bin").mkdir(parents=True)
    java = fake / "bin" / "java"
    java.write_text("#!/bin/sh\necho '    java.specification.version = 25' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("OPENSEARCH_JAVA_HOME", str(fake))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    # Then it is refused like no Java at all
    with pytest.raises(local_opensearch.OpenSearchUnavailable):
        local_opensearch.java_home()


def test_as_root_the_node_runs_as_an_ordinary_user_of_its_own_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenSearch refuses to start as root: as root, the command goes through unshare
    monkeypatch.setattr(local_opensearch, "fetch", lambda: Path("/opt/os"))
    monkeypatch.setattr(local_opensearch, "_write_config", lambda port: Path("/tmp/conf"))
    monkeypatch.setattr(local_opensearch, "java_home", lambda: Path("/usr/lib/jvm/java-17"))
    monkeypatch.setattr(local_opensearch, "DATA", Path(os.environ.get("TMPDIR", "/tmp")) / "fanout-os-test-data")
    monkeypatch.setattr(local_opensearch, "LOGS", Path(os.environ.get("TMPDIR", "/tmp")) / "fanout-os-test-logs")
    monkeypatch.setattr(local_opensearch.os, "geteuid", lambda: 0)
    argv, env = local_opensearch.command(9299)
    assert argv[0].endswith("unshare") and "--user" in argv and argv[-1] == "/opt/os/bin/opensearch"
    assert f"--map-user={local_opensearch.NOBODY_UID}" in argv
    assert env["OPENSEARCH_JAVA_HOME"] == "/usr/lib/jvm/java-17" and env["OPENSEARCH_PATH_CONF"] == "/tmp/conf"

    # and as another user it runs as that user
    monkeypatch.setattr(local_opensearch.os, "geteuid", lambda: 1000)
    argv, _ = local_opensearch.command(9299)
    assert argv == ["/opt/os/bin/opensearch"]
