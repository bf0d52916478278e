"""``fanout migrations generate``: write the next capture-trigger migration from the table mapping.

    fanout migrations generate                  write db/migrations/V<next>__capture_triggers.sql
    fanout migrations generate --stdout         print it instead; write nothing
    fanout migrations generate --name add_comments --version 7 --mapping my_tables.json

The migration creates, for every table in the mapping and every action it captures,
a trigger that appends the change to the change log and rings the parser once a
statement (with the @fanout_disable kill switch), then drops the triggers earlier
migrations created.
Nobody writes trigger SQL by hand; a mapping change becomes a new migration, which
the post-deploy hook applies once (see docs/migrations.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fanout.config import ConfigError
from fanout_cli.commands.migrate import directory_option
from fanout_cli.options import described


@click.group("migrations", short_help="work on the migration files (generate)", no_args_is_help=False)
def group() -> None:
    """Work on the migration files (generate)."""


@group.command(
    "generate",
    help=described(__doc__),
    short_help="write the next migration with the capture triggers for the tables in the mapping",
)
@directory_option
@click.option("--mapping", help="table mapping file (default: $FANOUT_MAPPING_FILE or the bundled one)")
@click.option("--name", help="description part of the file name (default: capture_triggers)")
@click.option("--version", type=int, help="version number (default: one above the highest)")
@click.option("--stdout", is_flag=True, help="print the migration instead of writing it")
def generate(directory: str, mapping: str | None, name: str | None, version: int | None, stdout: bool) -> int:
    from fanout.capture.migration_scripts import MigrationError, load_migrations
    from fanout.capture.triggers import DEFAULT_DESCRIPTION, capture_migration, live_triggers, write_capture_migration
    from fanout.model.mapping import MappingError, load_mappings

    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"migrations directory {path} does not exist (use --dir)")
    try:
        mappings = load_mappings(mapping)
        if stdout:
            existing = load_migrations(path)
            version = version or max((m.version for m in existing), default=0) + 1
            earlier = [m for m in existing if m.version < version]
            sys.stdout.write(capture_migration(mappings, version, live_triggers(earlier)))
            return 0
        written = write_capture_migration(path, mappings, description=name or DEFAULT_DESCRIPTION, version=version)
    except (MappingError, MigrationError, ValueError, FileExistsError) as exc:
        print(f"fanout migrations generate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0
