"""Where a change's lag comes from: the time between the stages it passed, trigger to every sink.

A change carries when it was committed (its trigger time), when the parser that took it was rung, when the
drainer claimed it from the change log and when it was handed to the fetch queue (:class:`fanout.model.change.Stage`,
in its message); the fetcher adds when it fetched it and when each sink acknowledged it. The stages, in ms:

=========  ===================================================================================================
ring       committed → rung: the ring's way to the parser (0 when a lingering drainer took it without a ring)
drain      rung (or committed, if later) → drained: waiting in the change log for the drainer's claim
hand-off   drained → handed to the fetch queue
queue      handed → fetched: the queue, the event source's batching window, the fetcher's start
<sink>     fetched → that sink acknowledged (its re-read included)
total      committed → the last sink acknowledged (what ``lag_ms`` of each sink is, at its own sink)
=========  ===================================================================================================

The fetcher's batch line carries each stage's p50/p99 and its values (whole ms), so ``fanout status`` reports
percentiles over any window (fanout_cli.replication_status). A change that came without stage times (a backfill,
a repair, a message of an older parser) counts only in ``total``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fanout.model.change import Change, Stage

TOTAL = "total"
ORDER = ("ring", "drain", "hand-off", "queue")  # then one per sink, then TOTAL


def percentile[N: (int, float)](values: Sequence[N], pct: float) -> N:
    """Nearest-rank percentile (what CloudWatch's pNN means for a set of samples)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def stage_durations(change: Change, fetched_us: int | None, acked_us: Mapping[str, int]) -> dict[str, int]:
    """The change's stages in whole ms (see the module's table); ``acked_us``: when each sink acknowledged it."""
    at = dict(change.stages)
    committed = change.changed_at_us
    durations: dict[str, int] = {}
    rung, drained, handed = at.get(Stage.RUNG), at.get(Stage.DRAINED), at.get(Stage.HANDED)
    if rung is not None:
        durations["ring"] = _ms(rung - committed)
    if drained is not None:
        durations["drain"] = _ms(drained - max(committed, rung or committed))
        if handed is not None:
            durations["hand-off"] = _ms(handed - drained)
    if handed is not None and fetched_us is not None:
        durations["queue"] = _ms(fetched_us - handed)
    if fetched_us is not None:
        for sink, acked in acked_us.items():
            durations[sink] = _ms(acked - fetched_us)
    if acked_us:
        durations[TOTAL] = _ms(max(acked_us.values()) - committed)
    return durations


def _ms(us: int) -> int:
    return max(0, round(us / 1000))


class StageTimes:
    """The stage durations of a batch's applied changes, for its log line."""

    def __init__(self) -> None:
        self.values: dict[str, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self.values)

    def add(self, change: Change, acked_us: Mapping[str, int]) -> None:
        """One change every sink holds (``acked_us``: when each acknowledged it); fetched is its FETCHED stage."""
        for stage, ms in stage_durations(change, dict(change.stages).get(Stage.FETCHED), acked_us).items():
            self.values.setdefault(stage, []).append(ms)

    def as_line(self) -> dict[str, dict[str, Any]]:
        """Per stage, in pipeline order: ``{"p50": ms, "p99": ms, "ms": [each change's]}``."""
        ordered = sorted(self.values, key=lambda s: (s == TOTAL, ORDER.index(s) if s in ORDER else len(ORDER)))
        return {
            stage: {"p50": percentile(self.values[stage], 50), "p99": percentile(self.values[stage], 99),
                    "ms": self.values[stage]}
            for stage in ordered
        }  # fmt: skip
