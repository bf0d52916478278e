"""The maintenance function's events (fanout.operations.maintenance.handle_event)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fanout.operations.maintenance import BadEvent, handle_event


def never_built() -> Any:
    raise AssertionError("the fetch path was built for an event that is not a maintenance request")


@pytest.mark.parametrize("event", [None, [], {}, {"action": "vacuum"}, {"action": ["backfill"]}])
def test_an_event_that_is_no_maintenance_request_is_refused_before_anything_is_built(event: Any) -> None:
    with pytest.raises(BadEvent, match='"action": "reconcile", "backfill", "check" or "reindex"'):
        handle_event(event, never_built, lambda payload: None, lambda: True)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"action": "reindex"}, "table must be a mapped table's name"),
        ({"action": "reindex", "table": "posts", "step": "swap"}, 'step must be "run", "rollback" or "drop-old"'),
    ],
)
def test_a_reindex_event_names_what_is_wrong_with_it(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        handle_event(event, lambda: None, lambda payload: None, lambda: True)  # type: ignore[arg-type,return-value]


def test_a_reindex_logs_its_progress_at_most_once_per_period(capsys: pytest.CaptureFixture[str]) -> None:
    from fanout.operations.backfill import BackfillProgress
    from fanout.operations.maintenance import ProgressLog

    now = [0.0]
    progress = ProgressLog("posts", every=10.0, clock=lambda: now[0])
    for second, (worker, rows) in enumerate([(0, 500), (1, 500), (0, 1000), (1, 1500)]):
        now[0] = second * 6.0  # 0, 6, 12, 18 s
        progress(worker, BackfillProgress("posts", rows, rows, 1, now[0], 4000))

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "reindex progress" in line]
    assert [(line["rows_done"], line["estimated"]) for line in lines] == [(1500, 4000)]  # at 12 s: both workers
