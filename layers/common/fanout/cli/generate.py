"""``fanout migrations generate``: write the next capture-trigger migration from the table mapping.

    fanout migrations generate                  write db/migrations/V<next>__capture_triggers.sql
    fanout migrations generate --stdout         print it instead; write nothing
    fanout migrations generate --name add_comments --version 7 --mapping my_tables.json

The migration creates, for every table in the mapping and every action it captures,
a trigger that sends the change to the parser (with the fallback table and the
@fanout_disable kill switch), then drops the triggers earlier migrations created.
Nobody writes trigger SQL by hand; a mapping change becomes a new migration, which
the post-deploy hook applies once (see docs/migrations.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fanout.config import ConfigError


def _generate(args: argparse.Namespace) -> int:
    from fanout.capture.migration_scripts import MigrationError, load_migrations
    from fanout.capture.triggers import DEFAULT_DESCRIPTION, capture_migration, live_triggers, write_capture_migration
    from fanout.model.mapping import MappingError, load_mappings

    directory = Path(args.dir)
    if not directory.is_dir():
        raise ConfigError(f"migrations directory {directory} does not exist (use --dir)")
    try:
        mappings = load_mappings(args.mapping)
        if args.stdout:
            existing = load_migrations(directory)
            version = args.version or max((m.version for m in existing), default=0) + 1
            earlier = [m for m in existing if m.version < version]
            sys.stdout.write(capture_migration(mappings, version, live_triggers(earlier)))
            return 0
        path = write_capture_migration(
            directory, mappings, description=args.name or DEFAULT_DESCRIPTION, version=args.version
        )
    except (MappingError, MigrationError, ValueError, FileExistsError) as exc:
        print(f"fanout migrations generate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from fanout.cli.migrate import _default_migrations_dir

    migrations = commands.add_parser("migrations", help="work on the migration files (generate)")
    actions = migrations.add_subparsers(dest="migrations_command", required=True, metavar="ACTION")
    generate = actions.add_parser(
        "generate",
        help="write the next migration with the capture triggers for the tables in the mapping",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    directory_help = "migrations directory (default: %(default)s)"
    generate.add_argument("--dir", default=_default_migrations_dir(), help=directory_help)
    generate.add_argument("--mapping", help="table mapping file (default: $FANOUT_MAPPING_FILE or the bundled one)")
    generate.add_argument("--name", help="description part of the file name (default: capture_triggers)")
    generate.add_argument("--version", type=int, help="version number (default: one above the highest)")
    generate.add_argument("--stdout", action="store_true", help="print the migration instead of writing it")
    generate.set_defaults(run=_generate)
