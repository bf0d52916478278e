"""The maintenance function's events (fanout.operations.maintenance.handle_event)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fanout.operations.maintenance import BadEvent, handle_event


def never_built() -> Any:
    raise AssertionError("the fetch path was built for an event that is not a maintenance request")


@pytest.mark.parametrize("event", [None, [], {}, {"action": "vacuum"}, {"action": ["backfill"]}])
def test_an_event_that_is_no_maintenance_request_is_refused_before_anything_is_built(event: Any) -> None:
    with pytest.raises(BadEvent, match='"action": "reconcile", "backfill" or "check"'):
        handle_event(event, never_built, lambda payload: None, lambda: True)


class Backfills:
    """Stands in for Maintenance: notes each backfill's options, and says it is done."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def backfill(self, job: Any, **options: Any) -> Any:
        self.calls.append(options)
        return SimpleNamespace(status="done", as_dict=lambda: {"status": "done"})


@pytest.mark.parametrize(("event", "events"), [({}, False), ({"events": False}, False), ({"events": True}, True)])
def test_a_backfill_publishes_change_events_only_when_the_event_asks(event: dict[str, Any], events: bool) -> None:
    deps = Backfills()
    handle_event({"action": "backfill", "table": "posts", **event}, lambda: deps, lambda payload: None, lambda: True)
    assert [call["events"] for call in deps.calls] == [events]


def test_a_backfill_with_events_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(BadEvent, match="events must be true or false"):
        handle_event({"action": "backfill", "table": "posts", "events": "yes"}, Backfills, lambda p: None, lambda: True)
