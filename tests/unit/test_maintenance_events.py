"""The maintenance function's events (fanout.operations.maintenance.handle_event)."""

from __future__ import annotations

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
