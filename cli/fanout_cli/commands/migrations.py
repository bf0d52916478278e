"""``fanout migrations generate``: write the next capture-trigger migration from the table mapping.

    fanout migrations generate                  write db/migrations/V<next>__capture_triggers.sql
    fanout migrations generate --stdout         print it instead; write nothing
    fanout migrations generate --name add_comments --version 7 --mapping my_tables.json
    fanout migrations generate --without-foreign-keys   only when the schema has no cascading foreign keys

The migration creates, for every table in the mapping and every action it captures,
a trigger that appends the change to the change log and rings the parser at most
once a statement and once a second per schema (with the @fanout_disable kill switch),
then drops the triggers earlier migrations created.
Nobody writes trigger SQL by hand; a mapping change becomes a new migration, which
the post-deploy hook applies once (see docs/migrations.md).

The database (DB_HOST, DB_NAME, ... as for `fanout migrate`) is read for its foreign
keys: the engine fires no trigger for rows it changes by ON DELETE/ON UPDATE CASCADE
or SET NULL, so the referenced tables get triggers that log those rows first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pymysql

from fanout.capture.foreign_keys import ForeignKey, read_foreign_keys
from fanout.config import ConfigError, DatabaseSettings
from fanout.source.connection import connect
from fanout_cli.commands.migrate import directory_option
from fanout_cli.operator_text import shown
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
@click.option(
    "--without-foreign-keys",
    is_flag=True,
    help="do not read the database's foreign keys (no cascade triggers): only for a schema without cascades",
)
def generate(
    directory: str, mapping: str | None, name: str | None, version: int | None, stdout: bool, without_foreign_keys: bool
) -> int:
    from fanout.capture.cascades import cascade_triggers
    from fanout.capture.migration_scripts import MigrationError, load_migrations
    from fanout.capture.triggers import DEFAULT_DESCRIPTION, capture_migration, live_triggers, write_capture_migration
    from fanout.model.mapping import MappingError, load_mappings

    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"migrations directory {path} does not exist (use --dir)")
    try:
        mappings = load_mappings(mapping)
        keys = [] if without_foreign_keys else _foreign_keys()
        if stdout:
            existing = load_migrations(path)
            version = version or max((m.version for m in existing), default=0) + 1
            earlier = [m for m in existing if m.version < version]
            cascades = cascade_triggers(mappings, keys, version)
            sys.stdout.write(capture_migration(mappings, version, live_triggers(earlier), cascades))
            return 0
        written = write_capture_migration(
            path,
            mappings,
            description=name or DEFAULT_DESCRIPTION,
            version=version,
            cascades=lambda chosen: cascade_triggers(mappings, keys, chosen),
        )
    except (MappingError, MigrationError, ValueError, FileExistsError) as exc:
        print(f"fanout migrations generate: {exc}", file=sys.stderr)
        return 1
    except pymysql.err.MySQLError as exc:
        print(f"fanout migrations generate: cannot read the foreign keys: {shown(exc)}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0


def _foreign_keys() -> list[ForeignKey]:
    """The foreign keys of the database the environment names (as for `fanout migrate`)."""
    try:
        settings = DatabaseSettings.from_env()
    except ConfigError as exc:
        reason = "generate reads the foreign keys from the database; or --without-foreign-keys"
        raise ConfigError(f"{exc} ({reason})") from None
    conn = connect(settings)
    try:
        return read_foreign_keys(conn, settings.name)
    finally:
        conn.close()
