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

import argparse
import json

from fanout_cli.progress import ProgressLine, command_logs


def _reconcile(args: argparse.Namespace) -> int:
    with command_logs(quiet=args.quiet):
        outcome = _run_reconcile(args)
    print(outcome[1])
    return outcome[0]


def _run_reconcile(args: argparse.Namespace) -> tuple[int, str]:
    from fanout.operations.maintenance import Maintenance

    deps = Maintenance(source="reconcile")
    progress = ProgressLine(quiet=args.json or args.quiet)
    try:
        report = deps.reconcile(
            tables=args.tables or None,
            sample=args.sample,
            page_size=args.batch_size,
            repair=args.repair,
            progress=lambda p: progress.update(
                f"reconcile {p.table} ({p.phase})",
                p.done,
                p.estimated_total if p.phase == "source" else None,
                p.elapsed_s,
            ),
        )
    finally:
        progress.finish()
        deps.close()
    text = json.dumps(report.as_dict(), indent=2, default=str) if args.json else report.summary()
    return (0 if report.agrees else 1), text


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "reconcile",
        help="compare source and sinks (missing, stale, orphans); --repair fixes them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tables", nargs="*", metavar="TABLE", help="mapped table(s) (default: all)")
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="check about N random rows per table, and about N entries of each sink for orphans, instead of all",
    )
    parser.add_argument("--repair", action="store_true", help="fix what differs through the fetch path")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per page (default 500)")
    parser.add_argument("--quiet", action="store_true", help="no progress line; log only warnings and errors")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=_reconcile)
