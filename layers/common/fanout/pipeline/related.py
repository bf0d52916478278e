"""The fetcher's side of composed documents: a change *via* a parent or link-target relation becomes the
root documents it touches, rebuilt page by page, a bounded number of pages per invocation.

The roots are found with a plain read in keyset pages on the root key (fanout.source.composition_read.root_page);
each page is applied like any batch of root changes (one composed locking read per chunk, one sink batch).
One invocation resolves at most :attr:`FanOut.pages` pages over all its changes via a relation, and a next page
only while it fits in the invocation's time left (``deadline``, paced as the fetcher's other steps); a change
with roots left when that budget or that time is spent is handed on as a *continuation*: the same change carrying a
resume cursor (``Change.after``, the last root key rebuilt), through the normal hand-off (the fetch queue),
so each invocation does bounded work whatever the fan-out.

When any root of a page fails, or the continuation cannot be handed on, the via change itself is reported
failed, so it is retried from its own cursor (a root already rebuilt is written again as a no-op or found
stale); a change that failed hands no continuation on, since its retry covers the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from fanout.deadline import NO_DEADLINE, Pace, TimeLeft
from fanout.model.change import Change
from fanout.model.mapping import Mappings
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.redaction import describe_error
from fanout.source.composition_read import ROOTS_PER_PAGE
from fanout.source.reader import RowSource

FailedKeys = set[tuple[str, tuple[tuple[str, object], ...]]]

# Pages of roots one invocation rebuilds (2,000 roots): 1-2 ms a document on the local stack
# (bench/results/composed.md) makes 2-4 s, far inside the fetcher's 60 s timeout even on a ten times slower
# source and beside the batch's own root changes.
PAGES_PER_INVOCATION = 4


@dataclass(frozen=True)
class FanOut:
    """How changes via a relation are resolved: ``source`` reads a page of roots (``root_page``),
    ``continuations.send`` hands a continuation on.

    Without ``continuations`` (maintenance, the CLI, tools) there is no budget: every page is rebuilt in the call.
    """

    source: RowSource
    continuations: ChangeQueue | None = None
    pages: int = PAGES_PER_INVOCATION
    page_size: int = ROOTS_PER_PAGE

    def __post_init__(self) -> None:
        if self.pages < 1 or self.page_size < 1:
            raise ValueError("a fan-out needs at least one page of at least one root per invocation")


def split_related(changes: Sequence[Change]) -> tuple[list[Change], list[Change]]:
    """(root changes, changes via a relation)."""
    return [c for c in changes if not c.via], [c for c in changes if c.via]


def apply_related(
    related: Sequence[Change],
    mappings: Mappings,
    fan_out: FanOut,
    apply_roots: Callable[[list[Change]], None],
    failed_keys: FailedKeys,
    failures: list[str],
    *,
    deadline: TimeLeft = NO_DEADLINE,
    pace: Pace | None = None,
) -> None:
    """Resolve each change via a relation to its roots and ``apply_roots`` them, page by page, within the
    invocation's page budget and, when it can hand on (``fan_out.continuations``), while ``pace`` says a page
    still fits in ``deadline``; what is left is handed on as a continuation."""
    pages_left = fan_out.pages if fan_out.continuations is not None else None
    for change in dict.fromkeys(related):  # equal changes via one relation resolve to the same roots
        mapping = mappings.get(change.table)
        assert mapping is not None, "changes are validated against the mapping"
        where = f"{change.table}/{change.via}/{change.document_id}"
        failed = False
        doing = "resolving its root documents"
        try:
            cursor = change
            while True:
                if pages_left == 0 or (pages_left is not None and pace is not None and not pace.allows(deadline)):
                    if not failed:  # the rest goes on as a continuation; a failed change's retry covers it
                        assert fan_out.continuations is not None
                        doing = "handing on its continuation"
                        fan_out.continuations.send([cursor])
                    break
                # one root beyond the page says whether another page follows, so that a fan-out ending
                # exactly on the budget hands on no continuation that would find nothing
                found = fan_out.source.root_page(mapping, cursor, fan_out.page_size + 1)
                page = found[: fan_out.page_size]
                if pages_left is not None:
                    pages_left -= 1
                if page:
                    apply_roots(page)
                    broken = [root for root in page if (root.table, root.key) in failed_keys]
                    if broken:
                        failures.append(f"{where}: {len(broken)} of its root documents failed")
                        failed_keys.add((change.table, change.key))
                        failed = True
                if len(found) <= fan_out.page_size:
                    break
                cursor = replace(change, after=page[-1].key)
        except Exception as exc:  # noqa: BLE001 - resolving or handing on failed: the change is retried
            failures.append(f"{where}: {doing} failed: {describe_error(exc)}")
            failed_keys.add((change.table, change.key))
