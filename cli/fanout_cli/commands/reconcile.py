"""``fanout reconcile``: do the source and each sink agree? With --repair, make them agree.

    fanout reconcile                  every mapped table, every row (constant memory)
    fanout reconcile posts --sample 1000   ~1000 random rows of posts, ~1000 entries of each sink for orphans
    fanout reconcile --repair         fix what differs through the live fetch path (orphans deleted)
    fanout reconcile --json           the report as JSON

Reports, per table and sink, the rows missing from the sink, the rows whose
content differs (stale), and orphans (in the sink, not in the source). Exit
status: 0 only when everything agrees (nothing found, or everything found was
repaired), 1 when differences remain. A row changed while reconcile runs may be
reported once; run again to confirm.
"""

from __future__ import annotations

import json

import click

from fanout_cli.options import described, json_option
from fanout_cli.progress import ProgressBar, command_logs
from fanout_cli.table_names import check_root_tables


@click.command(
    "reconcile",
    help=described(__doc__),
    short_help="compare source and sinks (missing, stale, orphans); --repair fixes them",
)
@click.argument("tables", nargs=-1, metavar="[TABLE]...")
@click.option(
    "--sample",
    type=int,
    metavar="N",
    help="check about N random rows per table, and about N entries of each sink for orphans, instead of all",
)
@click.option("--repair", is_flag=True, help="fix what differs through the fetch path")
@click.option("--batch-size", type=int, default=500, help="rows per page (default 500)")
@click.option("--quiet", is_flag=True, help="no progress bar; log only warnings and errors")
@json_option
def command(
    tables: tuple[str, ...], sample: int | None, repair: bool, batch_size: int, quiet: bool, as_json: bool
) -> int:
    with command_logs(quiet=quiet):
        status, text = _reconcile(list(tables), sample, repair, batch_size, quiet=quiet or as_json, as_json=as_json)
    print(text)
    return status


def _reconcile(
    tables: list[str], sample: int | None, repair: bool, batch_size: int, quiet: bool, as_json: bool
) -> tuple[int, str]:
    from fanout.model.mapping import default_mappings
    from fanout.operations.maintenance import Maintenance

    check_root_tables(tables, default_mappings(), "reconcile")  # before connecting: one clean line, no traceback
    deps = Maintenance(source="reconcile")
    progress = ProgressBar(quiet=quiet)
    try:
        report = deps.reconcile(
            tables=tables or None,
            sample=sample,
            page_size=batch_size,
            repair=repair,
            progress=lambda p: progress.update(
                f"reconcile {p.table} ({p.phase})", p.done, p.estimated_total if p.phase == "source" else None
            ),
        )
    finally:
        progress.finish()
        deps.close()
    text = json.dumps(report.as_dict(), indent=2, default=str) if as_json else report.summary()
    return (0 if report.agrees else 1), text
