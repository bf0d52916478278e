"""The local stack's services, each started unless it runs already: MySQL 8.0 with lambda_async and its bridge,
ministack (the AWS APIs), OpenSearch.

A port already taken by something that is not ours is refused with what to do, never silently shared (except a
MySQL 8.0 or an OpenSearch node, which are what we would start).
"""

from __future__ import annotations

import os
import re
import shutil
import sys

from local import mysql as local_mysql
from local import opensearch as local_opensearch
from local.config import MINISTACK_BIN, MINISTACK_STATE, MINISTACK_TMP, ROOT, LocalConfig, say
from local.database import admin_connection
from local.processes import base_env, http_ok, port_open, running_pid, start_process, stop_process, wait_for

# Stopped in this order by `make down`: the bridge before the server whose calls it serves.
SERVICES = ("bridge", "opensearch", "ministack", "mysql")
# How long each may take to stop after SIGTERM before it is killed. ministack writes its whole state then, one
# file a service: after benchmarks of hundreds of thousands of rows that took longer than 10 s, and the kill left
# the services not yet written out (the stack's functions and queues), so the next `make up` failed to deploy.
STOP_SECONDS = {"mysql": 60.0, "ministack": 300.0}


def stop_service(name: str) -> bool:
    """Stop one service, giving it its time to stop cleanly (STOP_SECONDS, else 10 s); False if it was not running."""
    return stop_process(name, timeout=STOP_SECONDS.get(name, 10.0))


def ensure_lambda_async_bridge(cfg: LocalConfig, restart: bool = False) -> None:
    """The process the lambda_async loadable function hands its calls to (local/lambda_async/bridge.py)."""
    if running_pid("bridge") and port_open(cfg.lambda_async_port) and not restart:
        return
    stop_service("bridge")
    if port_open(cfg.lambda_async_port):
        raise SystemExit(
            f"[local] port {cfg.lambda_async_port} is taken by another program; set FANOUT_LAMBDA_ASYNC_PORT"
        )
    say(f"starting the lambda_async bridge on 127.0.0.1:{cfg.lambda_async_port}")
    start_process(
        "bridge",
        [sys.executable, str(ROOT / "local" / "lambda_async" / "bridge.py"), "--port", str(cfg.lambda_async_port)],
        base_env() | cfg.aws_env() | {"PYTHONUNBUFFERED": "1"},
    )
    wait_for("the lambda_async bridge", lambda: port_open(cfg.lambda_async_port), 15, "bridge")


def ensure_mysql(cfg: LocalConfig) -> None:
    """MySQL 8.0 up on cfg.db_port with lambda_async installed (local/mysql.py); the bridge beside it.

    A server already listening there is used only if it is MySQL 8.0 (ours or the user's own, given by
    FANOUT_DB_*); anything else (a MariaDB left from an earlier setup, say) is refused with what to do.
    """
    if cfg.db_host not in ("127.0.0.1", "localhost"):
        found = local_mysql.server_identity(cfg.db_host, cfg.db_port, cfg.db_user, cfg.db_password)
        if found is None or not found.startswith("8.0."):
            raise SystemExit(f"[local] {cfg.db_host}:{cfg.db_port} is not a MySQL 8.0 we can log in to ({found})")
        return
    ensure_lambda_async_bridge(cfg)
    if not (running_pid("mysql") and port_open(cfg.db_port)):
        stop_service("mysql")
        if port_open(cfg.db_port):
            found = local_mysql.server_identity(cfg.db_host, cfg.db_port, cfg.db_user, cfg.db_password)
            if found is None or not found.startswith("8.0.") or "MariaDB" in found:
                raise SystemExit(
                    f"[local] port {cfg.db_port} is taken by {found or 'a program that is not MySQL'}; fanout needs "
                    "MySQL 8.0 (Aurora MySQL 3): stop it, or set FANOUT_DB_PORT to start the project's own there"
                )
            say(f"using the MySQL {found} already on {cfg.db_host}:{cfg.db_port}")
        else:
            argv, env = local_mysql.command(cfg.db_port, cfg.lambda_async_port)
            say(f"starting MySQL {local_mysql.VERSION} on {cfg.db_host}:{cfg.db_port}")
            start_process("mysql", argv, env)
            found = local_mysql.wait_until_ready(cfg.db_port, alive=lambda: running_pid("mysql") is not None)
            say(f"MySQL {found} is up")
    conn = admin_connection(cfg)
    try:
        local_mysql.install_lambda_async(conn)
    finally:
        conn.close()


STATE_PORT = MINISTACK_STATE / "gateway-port"  # the port the saved state was made under (ministack reads *.json only)


def ports_of_saved_state() -> set[str]:
    """The ports a saved state was made under: the one recorded beside it, and the ones its queues' addresses
    carry (a state saved before the port was recorded, or restored under another port and saved again, has only
    those to tell)."""
    ports = set()
    if STATE_PORT.exists():
        ports.add(STATE_PORT.read_text(encoding="utf-8").strip())
    queues = MINISTACK_STATE / "sqs.json"
    if queues.exists():
        ports |= set(re.findall(r"https?://[A-Za-z0-9.\-]+:(\d+)/", queues.read_text(encoding="utf-8")))
    return ports


def set_aside_state_of_another_port(cfg: LocalConfig) -> None:
    """ministack's saved state restores badly under another port: its queues keep their old address and their
    event-source mappings are never polled again (the fetch queue fills, nothing consumes it). So a state saved
    under another port is moved aside, named by that port, and ministack starts empty."""
    if running_pid("ministack") or not MINISTACK_STATE.exists():
        return
    other = sorted(ports_of_saved_state() - {str(cfg.aws_port)})
    if not other:
        return
    aside = MINISTACK_STATE.with_name(f"{MINISTACK_STATE.name}.port-{other[0]}")
    shutil.rmtree(aside, ignore_errors=True)
    MINISTACK_STATE.rename(aside)
    say(f"ministack's saved state was made under port {other[0]}, not {cfg.aws_port}: kept aside in {aside.name}")


def ensure_ministack(cfg: LocalConfig) -> bool:
    """Start ministack unless it is running; True if it was (re)started (its state is in memory)."""
    health = f"{cfg.aws_endpoint}/_ministack/health"
    if running_pid("ministack") and http_ok(health):
        return False
    stop_service("ministack")
    if port_open(cfg.aws_port):
        raise SystemExit(f"[local] port {cfg.aws_port} is taken by another program; set FANOUT_AWS_PORT")
    if not MINISTACK_BIN.exists():
        raise SystemExit(f"[local] {MINISTACK_BIN} is missing: run `make install` first")
    say(f"starting ministack on {cfg.aws_endpoint}")
    env = base_env() | {
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(cfg.aws_port),
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        "MINISTACK_REGION": cfg.region,
        "PYTHONUNBUFFERED": "1",
        # ministack keeps its state in memory: saved here when it stops (SIGTERM), loaded when it starts,
        # so the sinks and the deployed stack outlive `make down` as MySQL's rows do.
        "PERSIST_STATE": "1",
        "STATE_DIR": str(MINISTACK_STATE),
        "TMPDIR": str(MINISTACK_TMP),
    }
    if "MINISTACK_GC_FREEZE_SECONDS" in os.environ:  # local/ministack_launch.py: 0 to compare without it
        env["MINISTACK_GC_FREEZE_SECONDS"] = os.environ["MINISTACK_GC_FREEZE_SECONDS"]
    shutil.rmtree(MINISTACK_TMP, ignore_errors=True)  # what a previous run's workers left
    MINISTACK_TMP.mkdir(parents=True)
    MINISTACK_STATE.mkdir(parents=True, exist_ok=True)
    STATE_PORT.write_text(str(cfg.aws_port), encoding="utf-8")
    # its collector kept off the state it holds (local/ministack_launch.py says why); -P: local/'s modules stay
    # off ministack's import path
    launch = [str(MINISTACK_BIN.parent / "python"), "-P", str(ROOT / "local" / "ministack_launch.py")]
    start_process("ministack", launch, env)
    wait_for("ministack", lambda: http_ok(health), 60, "ministack")
    return True


def ensure_opensearch(cfg: LocalConfig) -> str:
    """A running OpenSearch; returns its endpoint.

    ``OPENSEARCH_ENDPOINT`` set to anything but the local node's address (a container, an Amazon OpenSearch
    Service domain) is used as it is. Otherwise the real single-node OpenSearch of local/opensearch.py is
    started unless it runs already (one started by another checkout of the project is shared).
    """
    if cfg.opensearch_endpoint != local_opensearch.endpoint(cfg.opensearch_port):
        if not http_ok(cfg.opensearch_endpoint + "/"):
            raise SystemExit(f"[local] OPENSEARCH_ENDPOINT={cfg.opensearch_endpoint} does not answer")
        return cfg.opensearch_endpoint
    found = local_opensearch.info(cfg.opensearch_port)
    if found is not None:
        if found.get("version", {}).get("distribution") != "opensearch":
            raise SystemExit(
                f"[local] port {cfg.opensearch_port} is taken by another program; set FANOUT_OPENSEARCH_PORT"
            )
        return cfg.opensearch_endpoint
    stop_service("opensearch")
    if port_open(cfg.opensearch_port):
        raise SystemExit(f"[local] port {cfg.opensearch_port} is taken by another program; set FANOUT_OPENSEARCH_PORT")
    argv, env = local_opensearch.command(cfg.opensearch_port)
    say(f"starting OpenSearch {local_opensearch.VERSION} on {cfg.opensearch_endpoint}")
    start_process("opensearch", argv, env)
    found = local_opensearch.wait_until_ready(cfg.opensearch_port, alive=lambda: running_pid("opensearch") is not None)
    say(f"OpenSearch {found['version']['number']} is up")
    return cfg.opensearch_endpoint


def stop_services() -> list[str]:
    """Stop every service this checkout started; returns the names of those that were running."""
    stopped = [name for name in SERVICES if stop_service(name)]
    if running_pid("ministack") is None:
        shutil.rmtree(MINISTACK_TMP, ignore_errors=True)
    return stopped
