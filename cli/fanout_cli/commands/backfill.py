"""``fanout backfill``: copy existing rows to the sinks through the live fetch path, resumably.

    fanout backfill posts                         every row of posts, 500 keys a page
    fanout backfill --all --rate 2000             every mapped table, at most 2000 rows/s
    fanout backfill posts --from 1000 --to 5000   a key range (inclusive; a JSON list for composite keys)
    fanout backfill tenant_settings --where "tenant = %s" --param acme
    fanout backfill posts --restart               forget the checkpoint, start from the first key
    fanout backfill posts --workers 4 --rate 4000 four key ranges at once, 4000 rows/s in all

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
DEAD_LETTER_QUEUE_URL (rows a sink can never take are recorded there).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fanout.config import ConfigError
from fanout_cli.progress import ProgressLine, command_logs


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


def _backfill(args: argparse.Namespace) -> int:
    with command_logs(quiet=args.quiet):
        outcome = _run_backfill(args)
    print(outcome[1])
    return outcome[0]


def _run_backfill(args: argparse.Namespace) -> tuple[int, str]:
    from fanout.operations.backfill import BackfillError, BackfillJob, KeyRange
    from fanout.operations.maintenance import Maintenance
    from fanout.pipeline.fetcher import FetchFailed

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    deps = Maintenance(source="backfill")
    names = sorted(deps.mappings.tables) if args.all else args.tables
    if not names:
        raise ConfigError("name a table (or --all)")
    if (args.key_from or args.key_to or args.where) and len(names) != 1:
        raise ConfigError("--from, --to and --where apply to one table: name exactly one")
    progress = ProgressLine(quiet=args.json or args.quiet)
    results: list[dict[str, Any]] = []
    status = 0
    try:
        for name in names:
            mapping = deps.mappings.get(name)
            if mapping is None:
                raise ConfigError(f"{name!r} is not a mapped table (tables.json)")
            types = [k.type for k in mapping.primary_key]
            key_range = KeyRange(
                parse_key(args.key_from, types, "--from") if args.key_from else None,
                parse_key(args.key_to, types, "--to") if args.key_to else None,
            )
            job = BackfillJob(name, key_range, args.where, tuple(args.param or ()))
            if args.workers > 1:
                outcome = _run_parallel(deps, mapping, job, args)
                results.append(outcome)
                status = max(status, 1 if outcome["status"] == "failed" else 0)
                continue
            try:
                result = deps.backfill(
                    job,
                    batch_size=args.batch_size,
                    rate=args.rate,
                    restart=args.restart,
                    progress=lambda p: progress.update(
                        f"backfill {p.table}", p.rows_done, p.estimated_total, p.elapsed_s
                    ),
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
    if args.json:
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


def _run_parallel(deps: Any, mapping: Any, job: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``job`` by ``--workers`` threads, each on its own connections and sinks, with a bar per range and one
    for the total (tqdm, on stderr, when it is a terminal)."""
    from fanout.operations.backfill import BackfillError
    from fanout.operations.backfill_parallel import plan, run_parallel_backfill
    from fanout.operations.maintenance import Maintenance

    ranges = plan(deps.conn(), mapping, job, args.workers, restart=args.restart)
    others = [Maintenance(source="backfill") for _ in ranges[1:]]
    bars = RangeBars(len(ranges), quiet=args.json or args.quiet)
    try:
        result = run_parallel_backfill(
            deps.conn(),
            mapping,
            job,
            [deps.backfill, *(other.backfill for other in others)],
            rate=args.rate,
            batch_size=args.batch_size,
            progress=bars.update,
        )
    except BackfillError as exc:
        return {"table": job.table, "job_id": job.job_id, "status": "failed", "error": str(exc)}
    finally:
        bars.close()
        for other in others:
            other.close()
    return result.as_dict()


class RangeBars:
    """One progress bar per range and one for the total (rows done across runs, against the range's share
    of the table's estimated rows)."""

    def __init__(self, ranges: int, quiet: bool) -> None:
        from tqdm import tqdm

        self._enabled = not quiet and sys.stderr.isatty()
        self._done = [0] * ranges
        self._bars: list[Any] = []
        if self._enabled:
            self._total = tqdm(desc="total", unit="rows", position=0, file=sys.stderr, dynamic_ncols=True)
            self._bars = [
                tqdm(desc=f"range {i + 1}", unit="rows", position=i + 1, file=sys.stderr, dynamic_ncols=True)
                for i in range(ranges)
            ]

    def update(self, index: int, progress: Any) -> None:
        if not self._enabled:
            return
        step = progress.rows_done - self._done[index]
        self._done[index] = progress.rows_done
        self._bars[index].update(step)
        self._total.update(step)

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
        if self._enabled:
            self._total.close()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "backfill",
        help="copy existing rows to the sinks (resumable, safe beside live changes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tables", nargs="*", metavar="TABLE", help="mapped table(s) to copy")
    parser.add_argument("--all", action="store_true", help="every mapped table")
    parser.add_argument("--from", dest="key_from", metavar="KEY", help="first key (inclusive)")
    parser.add_argument("--to", dest="key_to", metavar="KEY", help="last key (inclusive)")
    parser.add_argument("--where", metavar="SQL", help="extra condition (trusted SQL; values as %%s with --param)")
    parser.add_argument("--param", action="append", metavar="VALUE", help="a value for a %%s in --where (repeat)")
    parser.add_argument("--batch-size", type=int, default=500, help="keys per page (default 500)")
    parser.add_argument("--rate", type=float, help="at most this many rows per second")
    parser.add_argument("--workers", type=int, default=1, help="key ranges copied at once (default 1)")
    parser.add_argument("--restart", action="store_true", help="forget the checkpoint and start from the first key")
    parser.add_argument("--quiet", action="store_true", help="no progress line; log only warnings and errors")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=_backfill)
