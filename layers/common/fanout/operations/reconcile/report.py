"""What reconcile found, per table and sink: the counts, a few examples of each kind, the verdict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

OPENSEARCH, DYNAMODB = "opensearch", "dynamodb"
MISSING, STALE, ORPHAN = "missing", "stale", "orphan"
REFUSED, UNCHECKED = "refused", "unchecked"  # reported beside the drift, never repaired
KINDS = (MISSING, STALE, ORPHAN, REFUSED, UNCHECKED)
MAX_EXAMPLES = 20  # per table, sink and kind: the report stays small on a big drift


@dataclass
class SinkTally:
    checked: int = 0
    missing: int = 0
    stale: int = 0
    orphan: int = 0
    refused: int = 0
    unchecked: int = 0
    repaired: int = 0
    unrepaired: int = 0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.orphan

    def add(self, kind: str, key: Any, detail: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append({"key": key, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "examples": {k: v for k, v in self.examples.items() if v}}


@dataclass
class ReconcileReport:
    mode: str
    repair: bool
    tables: dict[str, dict[str, SinkTally]] = field(default_factory=dict)
    source_rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def tally(self, table: str, sink: str) -> SinkTally:
        return self.tables.setdefault(table, {}).setdefault(sink, SinkTally())

    def _tallies(self) -> Iterator[SinkTally]:
        return (tally for sinks in self.tables.values() for tally in sinks.values())

    @property
    def drift(self) -> int:
        return sum(t.drift for t in self._tallies())

    @property
    def unrepaired(self) -> int:
        if not self.repair:
            return self.drift
        return sum(t.unrepaired for t in self._tallies())

    @property
    def refused(self) -> int:
        return sum(t.refused for t in self._tallies())

    @property
    def unchecked(self) -> int:
        return sum(t.unchecked for t in self._tallies())

    @property
    def agrees(self) -> bool:
        """Everything agrees now: nothing found, or everything found was repaired; and no row was refused
        by a sink or left unchecked."""
        return self.unrepaired == 0 and self.refused == 0 and self.unchecked == 0

    @property
    def rows_per_s(self) -> float:
        rows = sum(self.source_rows.values())
        return rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        shown = ("mode", "repair", "agrees", "drift", "unrepaired", "refused", "unchecked", "source_rows")
        return {
            **{name: getattr(self, name) for name in shown},
            "elapsed_s": round(self.elapsed_s, 3),
            "source_rows_per_s": round(self.rows_per_s, 1),
            "tables": {t: {s: tally.as_dict() for s, tally in sinks.items()} for t, sinks in self.tables.items()},
        }

    def summary(self) -> str:
        lines = []
        for table, sinks in self.tables.items():
            for sink, t in sinks.items():
                line = (
                    f"{table} -> {sink}: {t.checked} checked, {t.missing} missing, {t.stale} stale, "
                    f"{t.orphan} orphan{'s' if t.orphan != 1 else ''}"
                )
                line += f", {t.refused} refused" if t.refused else ""
                line += f", {t.unchecked} unchecked" if t.unchecked else ""
                if self.repair:
                    line += f"; repaired {t.repaired}, unrepaired {t.unrepaired}"
                lines.append(line)
        verdict = "source and sinks agree" if self.agrees else f"DRIFT: {self.unrepaired} difference(s) remain"
        if self.refused:
            verdict += f"; {self.refused} row(s) refused by a sink (see the reasons; fix the mapping, then backfill)"
        if self.unchecked:
            verdict += f"; {self.unchecked} row(s) could not be checked"
        lines.append(f"{verdict} [{self.mode}, {self.elapsed_s:.1f}s]")
        return "\n".join(lines)


@dataclass
class ReconcileProgress:
    table: str
    phase: str  # "source", "opensearch orphans", "dynamodb orphans"
    done: int
    estimated_total: int | None
    elapsed_s: float
