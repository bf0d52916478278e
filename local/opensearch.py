"""A real OpenSearch node for the local stack and the tests (the stand-in for Amazon OpenSearch Service).

    python local/opensearch.py fetch   # download (Maven Central, checksum-pinned) and unpack into .local/

local/services.py starts a single node (``make up``, or the tests' fixtures) on 127.0.0.1:$FANOUT_OPENSEARCH_PORT
(9200); ``local/stack.py restart opensearch`` restarts it, ``make down`` stops it.

The node is OpenSearch's own minimal distribution, ``org.opensearch.distribution.integ-test-zip:opensearch``:
the server and its HTTP/transport module, no bundled JDK, no security plugin, no other modules (so no
painless scripts and no ingest pipelines, which fanout does not use), plus the ``mapper-extras`` module
(``scaled_float``, which the README recommends for DECIMAL columns). It runs on the machine's Java 17.
The zip is kept in ``.local/opensearch/`` (a cache that survives ``make down``), and so is the node's data:
what the sinks hold is still there after a restart.

OpenSearch refuses to run as root. As root (CI, a fresh machine) the node runs in a user namespace
in which it is an ordinary user (``unshare --user``): on disk it still acts as root, so it reads and
writes a checkout in any directory root owns, without a system user or a change of permissions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

# Run as a script (`python local/opensearch.py fetch`) as well as imported: the repository comes first on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.maven import copy_artifact  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VERSION = "2.19.6"  # the newest 2.x on Maven Central; 3.x needs Java 21
ARTIFACT = f"org.opensearch.distribution.integ-test-zip:opensearch:{VERSION}:zip"
ZIP_SHA256 = "71d6d8b1c637f3faecda0752b184b1cc526fc6eaad59ec1408c6327bb00b9293"
# Modules Amazon OpenSearch Service has and the zip leaves out, where the docs recommend a type of theirs:
# mapper-extras for `scaled_float` (DECIMAL columns). Name -> (artifact, jar SHA-256, plugin class, description).
MODULES = {
    "mapper-extras": (
        f"org.opensearch.plugin:mapper-extras-client:{VERSION}",
        "4a486870432b71a190dca3aaba91f1fba58837e4a4146b2982e8a938164a9a34",
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "Adds advanced field mappers",
    ),
}
CACHE = ROOT / ".local" / "opensearch"
HOME = CACHE / f"opensearch-{VERSION}"
DATA = CACHE / "data"
LOGS = CACHE / "logs"
# Heap for the node: room for the tests' indices, small beside MySQL, ministack and the functions (24 GB).
HEAP = os.environ.get("FANOUT_OPENSEARCH_HEAP", "768m")
NOBODY_UID = 65534  # the user the node is inside its namespace when this runs as root


class OpenSearchUnavailable(SystemExit):
    """The local node cannot be fetched or started; the message says why and what to do."""


def say(message: str) -> None:
    print(f"[opensearch] {message}", flush=True)


def _maven_copy(artifact: str, file_name: str, sha256: str) -> Path:
    """``artifact`` copied from Maven Central into the cache (once), checked against its pinned SHA-256."""
    return copy_artifact(
        artifact, CACHE, file_name, sha256,
        error=OpenSearchUnavailable, alternative="set OPENSEARCH_ENDPOINT to an OpenSearch you run yourself",
    )  # fmt: skip


def _install_modules() -> None:
    for name, (artifact, sha256, classname, description) in MODULES.items():
        folder = HOME / "modules" / name
        if (folder / "plugin-descriptor.properties").exists():
            continue
        artifact_id, version = artifact.split(":")[1:3]
        jar = _maven_copy(artifact, f"{artifact_id}-{version}.jar", sha256)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(jar, folder / jar.name)
        descriptor = {
            "name": name, "description": description, "version": VERSION, "classname": classname,
            "java.version": "11", "opensearch.version": VERSION, "extended.plugins": "",
            "has.native.controller": "false",
        }  # fmt: skip
        (folder / "plugin-descriptor.properties").write_text("".join(f"{k}={v}\n" for k, v in descriptor.items()))


def fetch() -> Path:
    """The unpacked distribution with its extra modules (fetched once with Maven, SHA-256 pinned)."""
    if (HOME / "bin" / "opensearch").exists():
        _install_modules()
        return HOME
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = _maven_copy(ARTIFACT, f"opensearch-{VERSION}.zip", ZIP_SHA256)
    staging = CACHE / f".unpacking-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(staging)
    for script in (staging / HOME.name / "bin").iterdir():  # zipfile drops the executable bits
        script.chmod(0o755)
    shutil.rmtree(HOME, ignore_errors=True)
    (staging / HOME.name).rename(HOME)
    staging.rmdir()
    _install_modules()
    return HOME


def java_home() -> Path:
    """A Java 11-21 runtime for OpenSearch 2.19 (OPENSEARCH_JAVA_HOME, JAVA_HOME, or the java on PATH)."""
    candidates = [os.environ.get("OPENSEARCH_JAVA_HOME"), os.environ.get("JAVA_HOME")]
    java = shutil.which("java")
    if java:
        candidates.append(str(Path(java).resolve().parent.parent))
    for candidate in filter(None, candidates):
        binary = Path(candidate) / "bin" / "java"
        if not binary.exists():
            continue
        probe = subprocess.run([str(binary), "-XshowSettings:properties", "-version"], capture_output=True, text=True)
        for line in probe.stderr.splitlines():
            if "java.specification.version" in line:
                major = int(line.split("=")[1].strip().split(".")[0])
                if 11 <= major <= 21:
                    return Path(candidate)
    raise OpenSearchUnavailable(
        "[opensearch] OpenSearch 2.19 needs Java 11 to 21 and none was found (tried OPENSEARCH_JAVA_HOME, "
        "JAVA_HOME, java on PATH): apt-get install openjdk-17-jre-headless, or set OPENSEARCH_ENDPOINT to an "
        "OpenSearch you run yourself"
    )


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def info(port: int) -> dict | None:  # type: ignore[type-arg]
    """``GET /`` of the node on ``port``, or None if nothing answers there."""
    try:
        with urllib.request.urlopen(endpoint(port) + "/", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.HTTPError):
        return None


def _write_config(port: int) -> Path:
    config = CACHE / f"config-{port}"
    if config.exists():
        shutil.rmtree(config)
    shutil.copytree(HOME / "config", config)
    settings = {
        "cluster.name": "fanout-local",
        "node.name": "fanout-local",
        "network.host": "127.0.0.1",
        "http.port": port,
        "transport.port": port + 100,
        "discovery.type": "single-node",
        "path.data": str(DATA / str(port)),
        "path.logs": str(LOGS),
        # a test box's disk may be nearly full: never turn indices read-only for it
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    (config / "opensearch.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    return config


def command(port: int) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start the node on ``port`` (as an ordinary user, see the module doc)."""
    home = fetch()
    config = _write_config(port)
    (DATA / str(port)).mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "OPENSEARCH_JAVA_HOME": str(java_home()),
        "OPENSEARCH_PATH_CONF": str(config),
        "OPENSEARCH_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP} -XX:ActiveProcessorCount=2",
    }
    argv = [str(home / "bin" / "opensearch")]
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise OpenSearchUnavailable(
                "[opensearch] OpenSearch cannot run as root, and unshare (util-linux) is missing"
            )
        argv = [unshare, "--user", f"--map-user={NOBODY_UID}", f"--map-group={NOBODY_UID}", *argv]
    return argv, env


def _get(port: int, path: str) -> dict | None:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(endpoint(port) + path, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def wait_until_ready(port: int, timeout: float = 120.0, alive=lambda: True) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Wait until the node serves every index it holds; returns ``GET /``.

    Green or yellow health is not enough after a restart: until the node has recovered its cluster state
    from disk it reports a healthy cluster with no indices (and a global block), and then its shards
    recover for a while (a request to one answers 503). So: no global block, health yellow or better, no
    initializing shard.
    """
    deadline = time.monotonic() + timeout
    health = "/_cluster/health?wait_for_status=yellow&wait_for_no_initializing_shards=true&timeout=1s"
    while time.monotonic() < deadline:
        if not alive():
            raise OpenSearchUnavailable(f"[opensearch] the node exited while starting; see {LOGS}/fanout-local.log")
        blocks = _get(port, "/_cluster/state/blocks")
        state = _get(port, health) if blocks is not None and "global" not in blocks.get("blocks", {}) else None
        if state and not state.get("timed_out") and state.get("status") in ("green", "yellow"):
            found = info(port)
            if found:
                return found
        time.sleep(0.5)
    raise OpenSearchUnavailable(f"[opensearch] the node did not become ready within {timeout:.0f}s; see {LOGS}")


def main(argv: list[str] | None = None) -> int:
    """``fetch`` only: starting and stopping are the stack's (``local/stack.py up|down|restart opensearch``)."""
    args = argv if argv is not None else sys.argv[1:]
    if args == ["fetch"]:
        print(fetch())
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
