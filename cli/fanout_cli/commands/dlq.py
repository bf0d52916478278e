"""``fanout dlq``: see and replay the dead-letter queue.

    fanout dlq list [filters]                 what is in the queue, oldest first
    fanout dlq show MESSAGE_ID                one record in full
    fanout dlq redrive [filters] [--dry-run]  replay through the normal path

Filters: --table posts, --source parser|fetcher (the function that rejected or
failed), --kind rejected|failed-invoke, --older-than 1h, --newer-than 2d, --id ID.

Redrive replays each record synchronously: a rejected payload is re-submitted
to the function that rejected it if the current table mapping accepts it; a
failed invoke is re-invoked on the function that failed, with its original
event. Sink writes are version-gated, so replaying what was already applied is
harmless. What succeeds is deleted; what fails again stays in the queue with
the error in its fanout-redrive-error attribute (see `fanout dlq show`).
Exit status: 0 when nothing was kept, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fanout.model.mapping import default_mappings
from fanout_cli.dead_letters.invoke import lambda_invoker
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.dead_letters.records import DeadLetter, Kind
from fanout_cli.dead_letters.redrive import RedriveOutcome, redrive
from fanout_cli.dead_letters.selection import Filter
from fanout_cli.operator_text import shown
from fanout_cli.options import add_stack_options, client, duration, stack_resources

HOLD_SECONDS = 300  # longer than a fetcher invocation (60 s timeout) times the records replayed at once


def _queue(args: argparse.Namespace) -> tuple[DeadLetterQueue, Any]:
    resources = stack_resources(args)
    return DeadLetterQueue(client("sqs"), resources.dead_letter_queue_url, resources), resources


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(
        tables=tuple(args.table or ()),
        sources=tuple(args.source or ()),
        kinds=tuple(Kind(k) for k in args.kind or ()),
        ids=tuple(getattr(args, "id", None) or ()),
        older_than_seconds=args.older_than,
        newer_than_seconds=args.newer_than,
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _line(letter: DeadLetter) -> str:
    """Two lines per letter; everything in them but the kind and the age comes from the record: escaped."""
    tables = ",".join(shown(table) for table in letter.tables) or "-"
    redriven = f"  redriven {letter.redrive_count}x" if letter.redrive_count else ""
    reason = shown(letter.last_redrive_error or letter.reason)
    source = shown(letter.source) or "-"
    return (
        f"{shown(letter.message_id)}  {_age(letter.age_seconds()):>6}  {letter.kind.value:<13} {source:<8} "
        f"{tables:<12}{redriven}\n    {reason}"
    )


def _list(args: argparse.Namespace) -> int:
    queue, _ = _queue(args)
    letters = queue.hold_all(hold_seconds=30)
    queue.release(letters)
    chosen = _filter(args).select(letters)
    if args.json:
        print(json.dumps([letter.summary() for letter in chosen], indent=2))
    else:
        for letter in chosen:
            print(_line(letter))
        print(f"{len(chosen)} of {len(letters)} dead letter(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    queue, _ = _queue(args)
    letters = queue.hold_all(hold_seconds=30)
    queue.release(letters)
    found = [letter for letter in letters if letter.message_id == args.message_id]
    if not found:
        print(f"fanout dlq show: no message {shown(args.message_id)} in the queue (in flight elsewhere, or gone)")
        return 1
    detail = found[0].detail()
    if args.json:
        print(json.dumps(detail, indent=2))
    else:
        print(_line(found[0]))
        print(json.dumps(detail["record"], indent=2))
    return 0


def _redrive(args: argparse.Namespace) -> int:
    queue, resources = _queue(args)
    letters = queue.hold_all(hold_seconds=HOLD_SECONDS)
    try:
        chosen = _filter(args).select(letters)
        invoke = lambda_invoker(client("lambda", read_timeout=120, retries={"max_attempts": 0}))
        results = redrive(chosen, queue, invoke, default_mappings(), resources, dry_run=args.dry_run)
    finally:
        queue.release(letters)  # the ones not chosen (deleted or re-sent ones are no longer held)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            target = f" -> {shown(r.function)}" if r.function else ""
            detail = f"\n    {shown(r.detail)}" if r.detail else ""
            print(f"{shown(r.letter.message_id)}  {r.outcome.value}{target}{detail}")
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        summary = ", ".join(f"{n} {o}" for o, n in counts.items()) or "nothing matched"
        print(f"{'dry run: ' if args.dry_run else ''}{summary}")
    kept = {RedriveOutcome.KEPT, RedriveOutcome.WOULD_KEEP}
    return 1 if any(r.outcome in kept for r in results) else 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", action="append", help="only records about this table (repeatable)")
    parser.add_argument("--source", action="append", choices=["parser", "fetcher"], help="rejected by / failed in")
    parser.add_argument("--kind", action="append", choices=[k.value for k in Kind if k is not Kind.UNKNOWN])
    parser.add_argument("--older-than", type=duration, help="only records queued at least this long ago (e.g. 1h)")
    parser.add_argument("--newer-than", type=duration, help="only records queued at most this long ago (e.g. 2d)")
    parser.add_argument("--id", action="append", help="only this message id (repeatable)")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = commands.add_parser(
        "dlq",
        help="list, show and redrive the dead-letter queue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="what is in the queue")
    add_stack_options(listing)
    _add_filters(listing)
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="one record in full")
    add_stack_options(show)
    show.add_argument("message_id")
    show.set_defaults(run=_show)
    again = actions.add_parser("redrive", help="replay records through the normal path")
    add_stack_options(again)
    _add_filters(again)
    again.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    again.set_defaults(run=_redrive)
