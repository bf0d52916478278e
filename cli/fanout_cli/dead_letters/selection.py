"""Which dead letters an operator means: the filters of ``fanout dlq list`` and ``fanout dlq redrive``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fanout_cli.dead_letters.records import DeadLetter, Kind


@dataclass(frozen=True)
class Filter:
    tables: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # parser / fetcher
    kinds: tuple[Kind, ...] = ()
    ids: tuple[str, ...] = ()
    older_than_seconds: float | None = None
    newer_than_seconds: float | None = None

    def matches(self, letter: DeadLetter, now: float | None = None) -> bool:
        age = letter.age_seconds(now)
        return (
            (not self.tables or bool(set(self.tables) & set(letter.tables)))
            and (not self.sources or letter.source in self.sources)
            and (not self.kinds or letter.kind in self.kinds)
            and (not self.ids or letter.message_id in self.ids)
            and (self.older_than_seconds is None or age >= self.older_than_seconds)
            and (self.newer_than_seconds is None or age <= self.newer_than_seconds)
        )

    def select(self, letters: Iterable[DeadLetter]) -> list[DeadLetter]:
        """The letters this filter matches, oldest first (replayed in the order they failed)."""
        return sorted((letter for letter in letters if self.matches(letter)), key=lambda letter: letter.sent_at_ms)
