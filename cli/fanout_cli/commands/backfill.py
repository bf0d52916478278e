"""``fanout backfill``: copy existing rows to the sinks through the live fetch path, resumably.

    fanout backfill posts                         every row of posts, 500 keys a page
    fanout backfill --all --rate 2000             every mapped table, at most 2000 rows/s
    fanout backfill posts --from 1000 --to 5000   a key range (inclusive; a JSON list for composite keys)
    fanout backfill tenant_settings --where "tenant = %s" --param acme
    fanout backfill posts --restart               forget the checkpoint, start from the first key
    fanout backfill posts --workers 4 --rate 4000 four key ranges at once, 4000 rows/s in all
    fanout backfill posts --events                also publish each row's change event (default: not)

Rows are read in primary-key order with keyset pagination and each page is
handed to the fetcher's code (locking re-read, version-gated writes), so it is
safe while live changes flow. Progress is checkpointed after every page in
fanout_backfill_checkpoint (migration V005): run the same command again after a
crash and it resumes. With --workers N the table is split into N key ranges of
equal row counts, each copied by its own thread with its own checkpoint; the
split is kept, so running the same command again resumes every range after its
own last page (--rate is the total for all of them). The --where text is trusted operator SQL, put in
parentheses after the key conditions; give its values with --param (bound as
%s parameters), never spliced into the text.

Exit status: 0 when every job is done, 1 when one failed (run again to resume).
Needs the fetcher's environment: DB_*, OPENSEARCH_ENDPOINT, DYNAMODB_TABLE,
DEAD_LETTER_QUEUE_URL (rows a sink can never take are recorded there); with
--events also EVENT_BUS_NAME. Without --events no change event is published, so
a reload does not flood the bus's consumers with rows they already hold.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import click

from fanout.config import ConfigError
from fanout_cli.options import described, json_option
from fanout_cli.progress import ProgressBar, RangeBars, command_logs
from fanout_cli.table_names import check_root_tables


def parse_key(text: str, key_types: list[str], what: str) -> tuple[Any, ...]:
    """``42``, ``acme`` or a JSON list ``["acme", "theme"]`` -> typed key values."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    values = value if isinstance(value, list) else [value]
    if len(values) != len(key_types):
        raise ConfigError(f"{what} {text!r} must give {len(key_types)} key value(s) (a JSON list for several)")
    typed: list[Any] = []
    for raw, kind in zip(values, key_types, strict=True):
        if kind == "int":
            try:
                typed.append(int(raw))
            except (TypeError, ValueError):
                raise ConfigError(f"{what} {text!r}: {raw!r} is not an integer key value") from None
        else:
            typed.append(str(raw))
    return tuple(typed)


@dataclass(frozen=True)
class BackfillOptions:
    tables: tuple[str, ...]
    all_tables: bool
    key_from: str | None
    key_to: str | None
    where: str | None
    params: tuple[str, ...]
    batch_size: int
    rate: float | None
    workers: int
    restart: bool
    quiet: bool
    events: bool
    as_json: bool


@click.command(
    "backfill",
    help=described(__doc__),
    short_help="copy existing rows to the sinks (resumable, safe beside live changes)",
)
@click.argument("tables", nargs=-1, metavar="[TABLE]...")
@click.option("--all", "all_tables", is_flag=True, help="every mapped table")
@click.option("--from", "key_from", metavar="KEY", help="first key (inclusive)")
@click.option("--to", "key_to", metavar="KEY", help="last key (inclusive)")
@click.option("--where", metavar="SQL", help="extra condition (trusted SQL; values as %s with --param)")
@click.option("--param", "params", multiple=True, metavar="VALUE", help="a value for a %s in --where (repeat)")
@click.option("--batch-size", type=int, default=500, help="keys per page (default 500)")
@click.option("--rate", type=float, help="at most this many rows per second")
@click.option("--workers", type=int, default=1, help="key ranges copied at once (default 1)")
@click.option("--restart", is_flag=True, help="forget the checkpoint and start from the first key")
@click.option("--quiet", is_flag=True, help="no progress bars; log only warnings and errors")
@click.option(
    "--events", is_flag=True, help="also publish each row's change event on the bus (default: not, to spare consumers)"
)
@json_option
def command(**options: Any) -> int:
    chosen = BackfillOptions(**options)
    with command_logs(quiet=chosen.quiet):
        status, text = _run_backfill(chosen)
    print(text)
    return status


def _run_backfill(options: BackfillOptions) -> tuple[int, str]:
    from fanout.model.mapping import default_mappings
    from fanout.operations.backfill import BackfillError, BackfillJob, KeyRange
    from fanout.operations.maintenance import Maintenance
    from fanout.pipeline.fetcher import FetchFailed

    if options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}")
    if not options.all_tables and not options.tables:
        raise ConfigError("name a table (or --all)")
    if options.events and not os.environ.get("EVENT_BUS_NAME", "").strip():
        raise ConfigError(
            "--events publishes on the stack's event bus: set EVENT_BUS_NAME (stack output EventBusName; "
            ".local/stack.env has it)"
        )
    check_root_tables(options.tables, default_mappings(), "backfill")  # before connecting: one clean line
    deps = Maintenance(source="backfill")
    names = sorted(deps.mappings.tables) if options.all_tables else options.tables
    if (options.key_from or options.key_to or options.where) and len(names) != 1:
        raise ConfigError("--from, --to and --where apply to one table: name exactly one")
    progress = ProgressBar(quiet=options.as_json or options.quiet)
    results: list[dict[str, Any]] = []
    status = 0
    try:
        for name in names:
            mapping = deps.mappings.get(name)
            if mapping is None:
                raise ConfigError(f"{name!r} is not a mapped table (tables.json)")
            types = [k.type for k in mapping.primary_key]
            key_range = KeyRange(
                parse_key(options.key_from, types, "--from") if options.key_from else None,
                parse_key(options.key_to, types, "--to") if options.key_to else None,
            )
            job = BackfillJob(name, key_range, options.where, options.params)
            if options.workers > 1:
                outcome = _run_parallel(deps, mapping, job, options)
                results.append(outcome)
                status = max(status, 1 if outcome["status"] == "failed" else 0)
                continue
            try:
                result = deps.backfill(
                    job,
                    events=options.events,
                    batch_size=options.batch_size,
                    rate=options.rate,
                    restart=options.restart,
                    progress=lambda p: progress.update(f"backfill {p.table}", p.rows_done, p.estimated_total),
                )
            except (FetchFailed, BackfillError) as exc:
                progress.finish()
                results.append({"table": name, "job_id": job.job_id, "status": "failed", "error": str(exc)})
                status = 1
                continue
            progress.finish()
            results.append(result.as_dict())
    finally:
        deps.close()
    if options.as_json:
        return status, json.dumps({"jobs": results}, indent=2)
    lines = []
    for r in results:
        if "ranges" in r:
            lines.append(
                f"{r['table']}: {r['status']}, {r['rows_done']} rows in total, {r['rows_this_run']} in this run "
                f"({r['rows_per_s']} rows/s) by {r['workers']} workers"
            )
            for i, part in enumerate(r["ranges"]):
                if part["status"] == "failed":
                    lines.append(f"  range {i + 1}: FAILED ({part['error']}); run again to resume")
                else:
                    resumed = f", resumed after {part['resumed_from']}" if part["resumed_from"] is not None else ""
                    lines.append(f"  range {i + 1}: {part['status']}, {part['rows_done']} rows{resumed}")
        elif r["status"] == "failed":
            lines.append(f"{r['table']}: FAILED ({r['error']}); run again to resume")
        else:
            resumed = f", resumed after {r['resumed_from']}" if r["resumed_from"] is not None else ""
            lines.append(
                f"{r['table']}: {r['status']}, {r['rows_done']} rows in total, {r['rows_this_run']} in this run "
                f"({r['rows_per_s']} rows/s){resumed}"
            )
    return status, "\n".join(lines)


def _run_parallel(deps: Any, mapping: Any, job: Any, options: BackfillOptions) -> dict[str, Any]:
    """``job`` by ``--workers`` threads, each on its own connections and sinks, with a bar per range and one
    for the total (tqdm, on stderr, when it is a terminal)."""
    from fanout.operations.backfill import BackfillError
    from fanout.operations.backfill_parallel import plan, run_parallel_backfill
    from fanout.operations.maintenance import Maintenance

    ranges = plan(deps.conn(), mapping, job, options.workers, restart=options.restart)
    others = [Maintenance(source="backfill") for _ in ranges[1:]]
    bars = RangeBars(len(ranges), quiet=options.as_json or options.quiet)
    try:
        result = run_parallel_backfill(
            deps.conn(),
            mapping,
            job,
            [partial(runner.backfill, events=options.events) for runner in (deps, *others)],
            rate=options.rate,
            batch_size=options.batch_size,
            progress=bars.update,
        )
    except BackfillError as exc:
        return {"table": job.table, "job_id": job.job_id, "status": "failed", "error": str(exc)}
    finally:
        bars.close()
        for other in others:
            other.close()
    return result.as_dict()
