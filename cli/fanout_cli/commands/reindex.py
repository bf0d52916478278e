"""``fanout reindex``: rebuild a table's OpenSearch index from the current mapping without downtime.

    fanout reindex posts                  next generation, live changes to both, copy, verify, swap the alias
    fanout reindex posts --workers 4      the copy in four key ranges at once
    fanout reindex posts --rollback       searches back on the previous generation (still written)
    fanout reindex posts --drop-old       stop writing the generation searches do not use, and delete it

The name in tables.json is the alias searches use. The command creates ``<alias>.g<n+1>`` with the mapping's
index_mappings and index_settings, writes live changes to both generations (version-gated in each), copies
every row from the source with the backfill machinery (checkpointed: run the same command again after a crash
and it resumes), reconciles the new generation against the source and swaps the alias in one call. It
refuses to swap on drift and says what. A concrete index from before aliases is replaced by the alias in the
same call. DynamoDB is not touched. Steps and cost: docs/runbook.md, "Changing a mapping".

Exit status: 0 after a clean swap (or rollback, or drop); 1 when the swap was refused or the run stopped
(run again to resume). Needs the fetcher's environment, as `fanout backfill`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from fanout.config import ConfigError
from fanout.model.mapping import default_mappings
from fanout_cli.operator_text import shown
from fanout_cli.options import described, json_option
from fanout_cli.progress import RangeBars, command_logs
from fanout_cli.table_names import check_root_tables


@click.command(
    "reindex",
    help=described(__doc__),
    short_help="rebuild a table's OpenSearch index behind its alias, live changes flowing",
)
@click.argument("table")
@click.option("--workers", type=int, default=1, help="key ranges copied at once (default 1)")
@click.option("--batch-size", type=int, default=500, help="keys per page (default 500)")
@click.option("--rate", type=float, help="at most this many rows per second (all workers)")
@click.option("--rollback", is_flag=True, help="point the alias back at the previous generation")
@click.option("--drop-old", is_flag=True, help="stop writing, then delete, the generation searches do not use")
@click.option("--quiet", is_flag=True, help="no progress bars; log only warnings and errors")
@json_option
def command(
    table: str,
    workers: int,
    batch_size: int,
    rate: float | None,
    rollback: bool,
    drop_old: bool,
    quiet: bool,
    as_json: bool,
) -> int:
    if rollback and drop_old:
        raise click.UsageError("--rollback and --drop-old are two steps: give one")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    check_root_tables([table], default_mappings(), "reindex")  # before connecting: one clean line
    with command_logs(quiet=quiet or as_json):
        result = _run(table, workers, batch_size, rate, rollback, drop_old, quiet or as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(_text(result))
    return 0 if result["status"] in ("swapped", "rolled-back", "dropped") else 1


def _run(
    table: str, workers: int, batch_size: int, rate: float | None, rollback: bool, drop_old: bool, quiet: bool
) -> dict[str, Any]:
    import pymysql
    from opensearchpy.exceptions import TransportError

    from fanout.operations.backfill import BackfillError
    from fanout.operations.maintenance import Maintenance
    from fanout.operations.reindex import ReindexError
    from fanout.pipeline.fetcher import FetchFailed

    deps = Maintenance(source="reindex")
    others: list[Any] = []
    try:
        reindex = deps.reindexer(notify=lambda message: None if quiet else click.echo(shown(message), err=True))
        try:
            if rollback:
                return reindex.rollback(table).as_dict()
            if drop_old:
                return reindex.drop_old(table).as_dict()
            others = [Maintenance(source="reindex") for _ in range(workers - 1)]
            bars = RangeBars(workers, quiet=quiet)
            try:
                return reindex.run(
                    table,
                    [deps.copy, *(other.copy for other in others)],
                    batch_size=batch_size,
                    rate=rate,
                    progress=bars.update,
                ).as_dict()
            finally:
                bars.close()
        except (ReindexError, BackfillError, FetchFailed, TransportError, pymysql.err.MySQLError) as exc:
            return {"table": table, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        for other in others:
            other.close()
        deps.close()


def _text(result: dict[str, Any]) -> str:
    table, status = shown(result["table"]), result["status"]
    if status == "failed":
        return f"{table}: FAILED ({shown(result['error'])})"
    if status == "drift":
        lines = [f"{table}: NOT swapped: {shown(result['new'])} differs from the source; searches stay on "]
        lines[0] += f"{shown(result['old'])}"
        lines += [f"  {shown(line)}" for line in result["drift"]]
        lines.append(f"  fix what differs (fanout reconcile), then run `fanout reindex {table}` again")
        return "\n".join(lines)
    if status == "swapped":
        copy = result["copy"]
        return (
            f"{table}: searches now use {shown(result['new'])} ({copy.get('rows_this_run', 0)} rows copied in this "
            f"run, {copy.get('rows_per_s', 0)} rows/s); {shown(result['old'])} is kept and written for --rollback "
            "until --drop-old"
        )
    if status == "rolled-back":
        return f"{table}: searches use {shown(result['new'])} again; {shown(result['old'])} is still written"
    if status == "dropped":
        return f"{table}: dropped {', '.join(shown(i) for i in result['dropped'])}"
    return f"{table}: {shown(status)}; run the same command again to resume"
