"""``fanout migrate``: the trigger migrations, as the post-deploy hook applies them.

    fanout migrate              apply pending trigger migrations (as the post-deploy hook does)
    fanout migrate --status     list applied / pending / modified / failed migrations
    fanout migrate --dry-run    print the SQL that would run, apply nothing
    fanout migrate --repair     forget failed migrations so the next run retries them

The database comes from the same variables the functions use (DB_HOST, DB_PORT,
DB_NAME and DB_USER/DB_PASSWORD or DB_SECRET_ARN); `make up` writes them to
.local/stack.env for the local stack.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from fanout.config import ConfigError, DatabaseSettings


def _default_migrations_dir() -> str:
    return os.environ.get("FANOUT_MIGRATIONS_DIR", "db/migrations")


def _migrate(args: argparse.Namespace) -> int:
    from fanout.capture.migration_scripts import MigrationError
    from fanout.capture.migrations import MigrationRunner
    from fanout.source.connection import connect

    settings = DatabaseSettings.from_env()
    directory = Path(args.dir)
    if not directory.is_dir():
        raise ConfigError(f"migrations directory {directory} does not exist (use --dir)")
    placeholders = {}
    parser_arn = args.parser_arn or os.environ.get("PARSER_FUNCTION_ARN", "")
    if parser_arn:
        placeholders["parser_function_arn"] = parser_arn
    runner = MigrationRunner(
        lambda: connect(settings),
        directory,
        placeholders,
        applied_by=f"cli:{getpass.getuser()}@{socket.gethostname()}",
    )
    try:
        if args.status:
            states = runner.status()
            if args.json:
                print(json.dumps([_status_dict(s) for s in states], indent=2, default=str))
            else:
                for s in states:
                    when = s.applied_at.isoformat(sep=" ", timespec="seconds") if s.applied_at else ""
                    print(f"V{s.version:03d}  {s.state:<8}  {s.description:<40} {when}")
                    if s.error:
                        print(f"      error: {s.error}")
            return 1 if any(s.state in ("modified", "failed") for s in states) else 0
        if args.repair:
            repaired = runner.repair()
            print(f"forgot failed migration(s): {repaired}" if repaired else "no failed migrations")
            return 0
        if not parser_arn:
            raise ConfigError("the parser function ARN is needed: --parser-arn or PARSER_FUNCTION_ARN")
        report = runner.migrate(dry_run=args.dry_run)
    except MigrationError as exc:
        print(f"fanout migrate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.__dict__, indent=2, default=str))
    elif report.dry_run:
        for version, statements in report.statements.items():
            print(f"-- V{version:03d}")
            for statement in statements:
                print(statement.rstrip(";") + ";\n")
        if not report.statements:
            print("nothing to apply")
    else:
        applied = ", ".join(f"V{v:03d}" for v in report.applied) or "nothing"
        print(f"applied {applied}; database at version {report.current_version or 0}")
    return 0


def _status_dict(status: Any) -> dict[str, Any]:
    return {k: getattr(status, k) for k in status.__dataclass_fields__}


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    migrate = commands.add_parser(
        "migrate",
        help="apply the capture-trigger migrations in db/migrations to the source database",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("--dir", default=_default_migrations_dir(), help="migrations directory (default: %(default)s)")
    migrate.add_argument("--parser-arn", help="ARN the triggers invoke (default: $PARSER_FUNCTION_ARN)")
    action = migrate.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show each migration's state; apply nothing")
    action.add_argument("--dry-run", action="store_true", help="print the SQL that would run; apply nothing")
    action.add_argument("--repair", action="store_true", help="forget failed migrations so they are retried")
    migrate.add_argument("--json", action="store_true", help="machine-readable output")
    migrate.set_defaults(run=_migrate)
