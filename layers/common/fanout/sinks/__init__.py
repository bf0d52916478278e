"""Sinks: where a re-read row is written. Each keeps the highest version it has seen.

A sink never assumes it is the only writer of a key: Lambda may run several
fetchers for one row at once, a backfill may write beside them, and a retry
may repeat a write. Every write is conditional on the version it carries, so
whichever arrives last, the highest version stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.source.reader import RowState


class Outcome(StrEnum):
    """What a sink did with one row state. STALE is normal: a newer state is already there."""

    WRITTEN = "written"
    DELETED = "deleted"
    STALE = "stale"
    REJECTED = "rejected"  # reported by the fetcher for a RowRejected; never returned by a sink


class SinkError(RuntimeError):
    """A sink could not take a write now; the change must be retried."""


class RowRejected(Exception):
    """This row state can never be written to this sink as it is (too large, unrepresentable, refused
    as invalid); retrying cannot help. The fetcher records it in the dead-letter queue, with the change
    so that it can be replayed once the mapping or the sink is fixed, and still writes the other sinks."""


class Sink(Protocol):
    """What the fetcher calls on a sink (fanout.pipeline.fetcher)."""

    name: str

    def enabled_for(self, mapping: TableMapping) -> bool: ...

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        """One row state, written (or found stale); raises RowRejected or SinkError."""
        ...

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """Rows of one table together; per row, in order, its Outcome or its exception (RowRejected: never
        writable; anything else: retried), so one row failing spares the others. :func:`apply_each` is the
        per-row form, for a sink with no batch request."""
        ...


def apply_each(
    sink: Sink, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]
) -> list[Outcome | Exception]:
    """``apply_batch`` for a sink that writes row by row: each row's ``apply``, one failing sparing the others."""
    outcomes: list[Outcome | Exception] = []
    for change, state in items:
        try:
            outcomes.append(sink.apply(mapping, change, state))
        except Exception as exc:  # noqa: BLE001 - reported per row to the fetcher, which decides
            outcomes.append(exc)
    return outcomes
