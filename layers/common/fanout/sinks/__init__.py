"""Sinks: where a re-read row is written. Each keeps the highest version it has seen."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from ..change import Change
from ..mapping import TableMapping
from ..source_reader import RowState


class Outcome(StrEnum):
    """What a sink did with one row state. STALE is normal: a newer state is already there."""

    WRITTEN = "written"
    DELETED = "deleted"
    STALE = "stale"


class SinkError(RuntimeError):
    """A sink could not take a write now; the change must be retried."""


class Sink(Protocol):
    name: str

    def enabled_for(self, mapping: TableMapping) -> bool: ...

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome: ...
