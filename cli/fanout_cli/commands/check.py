"""``fanout check``: compare the mapping, the installed triggers and the live schema; name every drift and its fix.

    fanout check                   one line per drift ("<what>: <problem>; fix: <what to do>"), exit 1 on any
    fanout check --risks           before a DDL: per table, the columns whose rename or drop fails writes or fetches
    fanout check --mapping my_tables.json

Reads the database the environment names (DB_HOST, DB_NAME, ... as for `fanout migrate`): its tables, columns,
primary keys, foreign keys and fanout triggers. With OPENSEARCH_ENDPOINT set, it also compares each live index's
mapping and settings with tables.json, and says "run fanout reindex TABLE" where OpenSearch cannot apply the
difference in place (a field's type, an analyzer, number_of_shards). Run it before and after every ALTER TABLE
on a captured table (docs/runbook.md, "Schema changes"); the maintenance function runs it on a schedule (the
SchemaDrift metric).
"""

from __future__ import annotations

import os
import sys

import click
import pymysql

from fanout.config import DatabaseSettings
from fanout.model.mapping import MappingError, load_mappings
from fanout.operations.index_drift import index_drifts
from fanout.operations.schema_check import check_schema, read_live_schema, risks
from fanout.sinks.opensearch import make_client
from fanout.source.connection import connect
from fanout_cli.operator_text import shown
from fanout_cli.options import described


@click.command(
    "check",
    help=described(__doc__),
    short_help="compare the mapping, the installed triggers and the live schema; exit 1 on any drift",
)
@click.option("--mapping", help="table mapping file (default: $FANOUT_MAPPING_FILE or the bundled one)")
@click.option("--risks", "list_risks", is_flag=True, help="list what a rename or drop of each column would break")
def command(mapping: str | None, list_risks: bool) -> int:
    try:
        mappings = load_mappings(mapping)
    except MappingError as exc:
        print(f"fanout check: {shown(exc)}", file=sys.stderr)
        return 1
    settings = DatabaseSettings.from_env()
    try:
        conn = connect(settings)
        try:
            live = read_live_schema(conn, settings.name)
        finally:
            conn.close()
    except pymysql.err.MySQLError as exc:
        print(f"fanout check: cannot read schema {shown(settings.name)}: {shown(exc)}", file=sys.stderr)
        return 1
    if list_risks:
        for line in risks(mappings, live):
            print(shown(line))
        return 0
    drifts = check_schema(mappings, live)
    endpoint = os.environ.get("OPENSEARCH_ENDPOINT", "").strip()
    if endpoint:
        from opensearchpy.exceptions import OpenSearchException

        try:
            drifts += index_drifts(make_client(endpoint, os.environ.get("OPENSEARCH_AUTH", "none")), mappings)
        except OpenSearchException as exc:
            print(
                f"fanout check: cannot read the OpenSearch indices at {shown(endpoint)}: {shown(exc)}", file=sys.stderr
            )
            return 1
    for drift in drifts:
        print(shown(drift.line()))
    if drifts:
        return 1
    print(f"no drift: {len(mappings.tables)} mapped tables, {len(live.triggers)} fanout triggers agree with the schema")
    return 0
