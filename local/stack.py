"""The local stack: everything the pipeline needs on one machine, without Docker.

    python local/stack.py up      # start services, deploy the app
    python local/stack.py down    # stop what `up` started
    python local/stack.py status  # what is running, and where
    python local/stack.py restart bridge|ministack|opensearch|mysql   # one piece, no redeploy

State outlives `down`: MySQL's rows (.local/mysql/data), OpenSearch's data (.local/opensearch/data) and
ministack's (.local/ministack-state: saved when it stops, loaded when it starts).

| Production            | Here                                                          |
|-----------------------|---------------------------------------------------------------|
| Aurora MySQL 3        | MySQL 8.0.31 (local/mysql.py) on 127.0.0.1:$FANOUT_DB_PORT    |
| lambda_async          | a loadable function + local/lambda_async/bridge.py            |
| Lambda, SQS, DynamoDB,| ministack (pinned, own venv in .local/ministack-venv) on      |
| S3, Secrets Manager,  | 127.0.0.1:$FANOUT_AWS_PORT (default 4566)                      |
| CloudFormation        |                                                               |
| OpenSearch Service    | a real OpenSearch 2.19 node (local/opensearch.py) on          |
|                       | 127.0.0.1:$FANOUT_OPENSEARCH_PORT (default 9200), or          |
|                       | $OPENSEARCH_ENDPOINT when it is set                           |

The pieces: local/services.py starts the services, local/deploy.py deploys the app and writes
.local/stack.env (endpoints and deployed names, KEY=value; local/config.py reads it), local/database.py
holds the demo schema.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script (`python local/stack.py`): the repository and this checkout's layer come first on the path.
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from local import opensearch as local_opensearch  # noqa: E402
from local.config import MINISTACK_STATE, STACK_ENV, STATE_DIR, LocalConfig, StackEnv, say  # noqa: E402
from local.database import demo_rows, migrations_missing_after_deploy, prepare_database  # noqa: E402
from local.deploy import deploy_app, fix_event_source_mappings  # noqa: E402
from local.processes import port_open, running_pid  # noqa: E402
from local.services import (  # noqa: E402
    SERVICES,
    ensure_lambda_async_bridge,
    ensure_ministack,
    ensure_mysql,
    ensure_opensearch,
    set_aside_state_of_another_port,
    stop_service,
    stop_services,
)

SHOWN = ("aws_endpoint_url", "opensearch_endpoint", "db_host", "db_port", "db_name", "parser_function_name",
         "fetcher_function_name", "dynamodb_table", "dead_letter_queue_url")  # fmt: skip


def up() -> StackEnv:
    """Every service running, the app deployed with the current code; idempotent."""
    cfg = LocalConfig.from_env()
    started = time.monotonic()
    STATE_DIR.mkdir(exist_ok=True)
    ensure_mysql(cfg)
    set_aside_state_of_another_port(cfg)
    had_state = (MINISTACK_STATE / "dynamodb.json").exists()
    restarted = ensure_ministack(cfg)
    ensure_opensearch(cfg)
    prepare_database(cfg)
    env = deploy_app(cfg)
    missing = migrations_missing_after_deploy(cfg, env)
    if missing:
        say(
            f"{cfg.db_name} lacked migrations {', '.join(f'V{v:03d}' for v in missing)} that the deployed stack's "
            "hook had applied (the database lost them, ministack kept the stack): applied them now"
        )
    # a fresh bridge: no failure or delay a test or benchmark set is left behind
    ensure_lambda_async_bridge(cfg, restart=True)
    if restarted:
        _say_whether_the_sinks_kept_up(cfg, had_state)
    say(f"up in {time.monotonic() - started:.0f}s; endpoints and names in {STACK_ENV.relative_to(ROOT)}:")
    for name in SHOWN:
        print(f"  {name.upper()}={getattr(env, name)}")
    return env


def _say_whether_the_sinks_kept_up(cfg: LocalConfig, had_state: bool) -> None:
    """ministack saves its state when it stops and loads it when it starts; killed, it saves nothing."""
    fix = "set -a; . .local/stack.env; set +a; .venv/bin/fanout reconcile --repair"
    if not had_state and demo_rows(cfg):
        say(f"ministack started without saved state while MySQL kept its rows: the sinks lack them. Fix: {fix}")
    elif had_state:
        say(
            f"ministack restored its state from {MINISTACK_STATE.relative_to(ROOT)} (saved when it stopped); "
            f"had it been killed instead, the sinks may lag MySQL: `fanout reconcile` shows it, this fixes it: {fix}"
        )


def restart(piece: str) -> None:
    """Restart one piece of a running stack, without a redeploy (its state and the others' are kept)."""
    cfg = LocalConfig.from_env()
    if piece == "bridge":
        ensure_lambda_async_bridge(cfg, restart=True)
    elif piece == "mysql":
        stop_service("mysql")
        ensure_mysql(cfg)  # its rows live in .local/mysql/data
    elif piece == "opensearch":
        stop_service("opensearch")
        ensure_opensearch(cfg)  # its data lives in .local/opensearch/data
    else:
        stop_service("ministack")  # SIGTERM: it saves its state first
        ensure_ministack(cfg)
        fix_event_source_mappings(cfg)
    say(f"restarted {piece}")


def down() -> None:
    for name in stop_services():
        say(f"stopped {name}")
    STACK_ENV.unlink(missing_ok=True)


def status() -> int:
    cfg = LocalConfig.from_env()
    ok = True
    for name in SERVICES:
        pid = running_pid(name)
        if pid is None and name == "opensearch" and local_opensearch.info(cfg.opensearch_port) is not None:
            print(f"{name:10} running at {cfg.opensearch_endpoint} (started by another checkout, shared)")
            continue
        ok &= pid is not None
        print(f"{name:10} {f'running (pid {pid})' if pid else 'stopped'}")
    db = port_open(cfg.db_port, cfg.db_host)
    print(f"{'database':10} {'reachable' if db else 'unreachable'} at {cfg.db_host}:{cfg.db_port}")
    return 0 if ok and db else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "restart"])
    parser.add_argument("piece", nargs="?", choices=["bridge", "ministack", "opensearch", "mysql"], help="for restart")
    args = parser.parse_args(argv)
    if args.command == "restart":
        if args.piece is None:
            parser.error("restart needs the piece: bridge, ministack, opensearch or mysql")
        restart(args.piece)
        return 0
    if args.command == "up":
        up()
        return 0
    if args.command == "down":
        down()
        return 0
    return status()


if __name__ == "__main__":
    sys.exit(main())
