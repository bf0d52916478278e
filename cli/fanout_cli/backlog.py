"""What waits, and how fast it is worked off: the change log, the fetch queue, and the drain rate.

``fanout status`` shows it so that an operator sees a burst being worked off: the backlog is the rows waiting in
the change log (the oldest one's age: how long a change has waited) plus the messages in the fetch queue
(waiting and in flight), and the drain rate is the changes the fetcher applied per second over the last
``RATE_WINDOW_SECONDS`` (its ``changes applied`` log lines). Backlog ÷ drain rate is how long it will take.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fanout_cli.dead_letters.queue import queue_depth

RATE_WINDOW_SECONDS = 300


def fetch_queue_depth(sqs: Any, queue_url: str) -> dict[str, Any]:
    """The fetch queue's messages waiting and in flight (SQS's approximate counts), or why they were not read."""
    if not queue_url:
        return {"error": "not read: FETCH_QUEUE_URL not set (or pass --stack-name)"}
    try:
        depth = queue_depth(sqs, queue_url)
    except Exception as exc:  # noqa: BLE001 - reported on its line, the rest of the status still shown
        return {"error": f"not read: {exc}"}
    return {"waiting": depth.visible, "in_flight": depth.in_flight}


def drain_rate(fetcher_events: Iterable[dict[str, Any]], now_ms: int, window_s: int = RATE_WINDOW_SECONDS) -> float:
    """Changes applied per second over the last ``window_s`` seconds, from the fetcher's batch lines."""
    since = now_ms - window_s * 1000
    applied = 0
    for event in fetcher_events:
        if int(event.get("timestamp", 0)) < since:
            continue
        try:
            line = json.loads(event.get("message", ""))
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("message") == "changes applied" and isinstance(line.get("changes"), int):
            applied += line["changes"]
    return applied / window_s


def backlog(change_log: dict[str, Any], queue: dict[str, Any], rate: float) -> dict[str, Any]:
    """The backlog report: the change log and fetch-queue entries as read, their total, the drain rate and the
    time to work the backlog off at that rate (None when nothing drains)."""
    total = None
    if "error" not in change_log and "error" not in queue:
        total = int(change_log.get("depth", 0)) + queue["waiting"] + queue["in_flight"]
    eta = None if total is None or rate <= 0 else total / rate
    return {
        "change_log": change_log,
        "fetch_queue": queue,
        "total": total,
        "drain_rate_per_s": round(rate, 2),
        "seconds_to_drain": None if eta is None else round(eta, 1),
    }


def render_backlog(entry: dict[str, Any]) -> list[str]:
    log = entry["change_log"]
    if "error" in log:
        log_part = f"change log {log['error']}"
    else:
        age = log.get("oldest_age_seconds")
        log_part = f"change log {log.get('depth', 0)} row(s)" + (f" (oldest {age:.1f}s)" if age is not None else "")
    queue = entry["fetch_queue"]
    queue_part = (
        f"fetch queue {queue['error']}"
        if "error" in queue
        else f"fetch queue {queue['waiting']} waiting + {queue['in_flight']} in flight"
    )
    rate = f"drain rate {entry['drain_rate_per_s']:g}/s over the last {RATE_WINDOW_SECONDS // 60} min"
    if entry["seconds_to_drain"] is not None and entry["total"]:
        rate += f", ~{entry['seconds_to_drain']:.0f}s to work off"
    return [f"backlog: {log_part}; {queue_part}", f"  {rate}"]
