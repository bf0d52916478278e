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

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from fanout.model.mapping import default_mappings
from fanout_cli.dead_letters.invoke import lambda_invoker
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.dead_letters.records import DeadLetter, Kind
from fanout_cli.dead_letters.redrive import RedriveOutcome, redrive
from fanout_cli.dead_letters.selection import Filter
from fanout_cli.operator_text import shown
from fanout_cli.options import DURATION, client, described, stack_options
from fanout_cli.stack_resources import StackResources, resolve

HOLD_SECONDS = 300  # longer than a fetcher invocation (60 s timeout) times the records replayed at once


def _queue(stack_name: str | None) -> tuple[DeadLetterQueue, StackResources]:
    resources = resolve(stack_name)
    return DeadLetterQueue(client("sqs"), resources.dead_letter_queue_url, resources), resources


def filter_options(command: Callable[..., int]) -> Callable[..., int]:
    """The filters (--table, --source, --kind, --older-than, --newer-than, --id), given to ``command`` as one
    ``selection``."""

    @functools.wraps(command)
    def with_selection(
        *,
        table: tuple[str, ...],
        source: tuple[str, ...],
        kind: tuple[str, ...],
        older_than: float | None,
        newer_than: float | None,
        ids: tuple[str, ...],
        **others: Any,
    ) -> int:
        selection = Filter(
            tables=table,
            sources=source,
            kinds=tuple(Kind(k) for k in kind),
            ids=ids,
            older_than_seconds=older_than,
            newer_than_seconds=newer_than,
        )
        return command(selection=selection, **others)

    kinds = [k.value for k in Kind if k is not Kind.UNKNOWN]
    options = (
        click.option("--table", multiple=True, help="only records about this table (repeatable)"),
        click.option(
            "--source", multiple=True, type=click.Choice(["parser", "fetcher"]), help="rejected by / failed in"
        ),
        click.option("--kind", multiple=True, type=click.Choice(kinds)),
        click.option("--older-than", type=DURATION, help="only records queued at least this long ago (e.g. 1h)"),
        click.option("--newer-than", type=DURATION, help="only records queued at most this long ago (e.g. 2d)"),
        click.option("--id", "ids", multiple=True, help="only this message id (repeatable)"),
    )
    for option in reversed(options):
        with_selection = option(with_selection)
    return with_selection


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


@click.group(
    "dlq", help=described(__doc__), short_help="list, show and redrive the dead-letter queue", no_args_is_help=False
)
def group() -> None:
    pass


@group.command("list", short_help="what is in the queue")
@stack_options
@filter_options
def list_letters(stack_name: str | None, as_json: bool, selection: Filter) -> int:
    """What is in the queue, oldest first."""
    queue, _ = _queue(stack_name)
    letters = queue.hold_all(hold_seconds=30)
    queue.release(letters)
    chosen = selection.select(letters)
    if as_json:
        print(json.dumps([letter.summary() for letter in chosen], indent=2))
    else:
        for letter in chosen:
            print(_line(letter))
        print(f"{len(chosen)} of {len(letters)} dead letter(s)")
    return 0


@group.command("show", short_help="one record in full")
@stack_options
@click.argument("message_id")
def show(stack_name: str | None, as_json: bool, message_id: str) -> int:
    """One record in full."""
    queue, _ = _queue(stack_name)
    letters = queue.hold_all(hold_seconds=30)
    queue.release(letters)
    found = [letter for letter in letters if letter.message_id == message_id]
    if not found:
        print(f"fanout dlq show: no message {shown(message_id)} in the queue (in flight elsewhere, or gone)")
        return 1
    detail = found[0].detail()
    if as_json:
        print(json.dumps(detail, indent=2))
    else:
        print(_line(found[0]))
        print(json.dumps(detail["record"], indent=2))
    return 0


@group.command("redrive", short_help="replay records through the normal path")
@stack_options
@filter_options
@click.option("--dry-run", is_flag=True, help="say what would happen; change nothing")
def redrive_letters(stack_name: str | None, as_json: bool, selection: Filter, dry_run: bool) -> int:
    """Replay records through the normal path; what fails again stays in the queue with its error."""
    queue, resources = _queue(stack_name)
    letters = queue.hold_all(hold_seconds=HOLD_SECONDS)
    try:
        chosen = selection.select(letters)
        invoke = lambda_invoker(client("lambda", read_timeout=120, retries={"max_attempts": 0}))
        results = redrive(chosen, queue, invoke, default_mappings(), resources, dry_run=dry_run)
    finally:
        queue.release(letters)  # the ones not chosen (deleted or re-sent ones are no longer held)
    if as_json:
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
        print(f"{'dry run: ' if dry_run else ''}{summary}")
    kept = {RedriveOutcome.KEPT, RedriveOutcome.WOULD_KEEP}
    return 1 if any(r.outcome in kept for r in results) else 0
