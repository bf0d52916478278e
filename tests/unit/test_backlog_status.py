"""``fanout status`` shows the backlog (change log, fetch queue, oldest change) and the drain rate
(fanout_cli.backlog), so that an operator sees a burst being worked off."""

from __future__ import annotations

import json
from typing import Any

from fanout_cli.backlog import RATE_WINDOW_SECONDS, backlog, drain_rate, fetch_queue_depth, render_backlog

NOW_MS = 1_764_240_000_000


def batch_line(seconds_ago: float, changes: int) -> dict[str, Any]:
    message = {"level": "INFO", "message": "changes applied", "changes": changes}
    return {"timestamp": NOW_MS - int(seconds_ago * 1000), "message": json.dumps(message)}


class QueueAttributes:
    def __init__(self, waiting: int, in_flight: int) -> None:
        self.attributes = {
            "ApproximateNumberOfMessages": str(waiting),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
        }

    def get_queue_attributes(self, **request: Any) -> dict[str, Any]:
        return {"Attributes": self.attributes}


def test_the_drain_rate_counts_the_changes_the_fetcher_applied_in_the_window_only() -> None:
    events = [
        batch_line(10, 600),
        batch_line(200, 300),
        batch_line(RATE_WINDOW_SECONDS + 5, 10_000),  # before the window
        {"timestamp": NOW_MS, "message": json.dumps({"message": "change deferred", "changes": 50})},
        {"timestamp": NOW_MS, "message": "START RequestId: 1"},
    ]

    assert drain_rate(events, NOW_MS) == 900 / RATE_WINDOW_SECONDS


def test_the_backlog_is_the_change_log_and_the_fetch_queue_with_the_time_to_work_it_off() -> None:
    log = {"depth": 1200, "oldest_age_seconds": 42.0}
    queue = fetch_queue_depth(QueueAttributes(700, 100), "https://sqs/fetch")

    entry = backlog(log, queue, rate=50.0)

    assert (entry["total"], entry["seconds_to_drain"]) == (2000, 40.0)
    assert render_backlog(entry) == [
        "backlog: change log 1200 row(s) (oldest 42.0s); fetch queue 700 waiting + 100 in flight",
        "  drain rate 50/s over the last 5 min, ~40s to work off",
    ]


def test_a_part_not_read_is_named_and_no_total_is_made_up() -> None:
    entry = backlog({"depth": 3}, fetch_queue_depth(QueueAttributes(0, 0), ""), rate=0.0)

    assert entry["total"] is None and entry["seconds_to_drain"] is None
    assert "FETCH_QUEUE_URL not set" in render_backlog(entry)[0]
