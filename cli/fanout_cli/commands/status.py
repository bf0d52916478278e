"""``fanout status``: per table, the last applied change, the replication lag, counts, and dead letters; the
backlog (change log, fetch queue, oldest change) and the drain rate.

    fanout status                  the last hour, from the environment (.local/stack.env for the local stack)
    fanout status --since 15m      a shorter window
    fanout status --stack-name fanout-prod --json

Lag is the time from the trigger (the change in the source database) to the
write in each sink, as the fetcher measured it. The change log's depth and the
age of its oldest row are read from the database when its settings are in the
environment (DB_HOST ... or DB_SECRET_ARN), with a plain read that locks nothing.
Counts are log lines in the window (a change Lambda retried counts once per
attempt), read newest first: when a window holds more than --max-events log
events per function, the report says so and from when on it is complete. The
dead-letter queue is read without consuming it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from fanout.model.mapping import default_mappings
from fanout_cli.backlog import backlog, drain_rate, fetch_queue_depth, render_backlog
from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.operator_text import shown
from fanout_cli.options import DURATION, client, described, stack_options
from fanout_cli.replication_status import log_lines, read_log_events, summarize
from fanout_cli.stack_resources import resolve


def change_log(env: Any = None) -> dict[str, Any]:
    """The change log's depth and oldest age, or why they could not be read."""
    import pymysql

    from fanout.capture.change_log_status import change_log_status
    from fanout.config import ConfigError, DatabaseSettings
    from fanout.source.connection import connect

    try:
        conn = connect(DatabaseSettings.from_env(env))
    except (ConfigError, pymysql.err.Error) as exc:
        return {"error": f"not read: {exc}"}
    try:
        status = change_log_status(conn)
    except pymysql.err.Error as exc:
        return {"error": f"not read: {exc}"}
    finally:
        conn.close()
    if status is None:
        return {"error": "no change log (migration V006 not applied)"}
    return {"depth": status.depth, "oldest": status.oldest, "oldest_age_seconds": status.oldest_age_seconds}


def collect(stack_name: str | None, since: float, max_events: int) -> dict[str, Any]:
    resources = resolve(stack_name)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - int(since * 1000)
    logs = client("logs")
    windows = {
        function: read_log_events(logs, group, start_ms, now_ms, max_events)
        for function, group in (("parser", resources.parser_log_group), ("fetcher", resources.fetcher_log_group))
    }
    queue = DeadLetterQueue(client("sqs"), resources.dead_letter_queue_url, resources)
    depth = queue.depth()
    letters = queue.hold_all(hold_seconds=30) if depth.visible else []
    queue.release(letters)
    report = summarize(
        log_lines(event for window in windows.values() for event in window.events),
        letters,
        depth,
        default_mappings().tables,
        window_seconds=since,
        now_ms=now_ms,
        windows=windows,
    )
    report["change_log"] = change_log()
    rate = drain_rate(windows["fetcher"].events, now_ms)
    report["backlog"] = backlog(report["change_log"], fetch_queue_depth(client("sqs"), resources.fetch_queue_url), rate)
    return report


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms"


def _change_log_line(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"change log: {entry['error']}"
    age = entry.get("oldest_age_seconds")
    return f"change log: {entry.get('depth', 0)} row(s) waiting" + (f", oldest {age:.1f}s" if age is not None else "")


def render(report: dict[str, Any]) -> str:
    dlq = report["dead_letter_queue"]
    out = [
        f"fanout status at {report['generated_at']} (last {report['window_seconds'] / 60:g} min)",
        f"dead-letter queue: {dlq['depth']} message(s)" + (" -> fanout dlq list" if dlq["depth"] else ""),
        _change_log_line(report.get("change_log", {})),
        *(render_backlog(report["backlog"]) if "backlog" in report else []),
    ]
    for function, cut in report.get("truncated", {}).items():
        out.append(
            f"TRUNCATED: the {function}'s log held more than {cut['events_read']} events in the window; counts and "
            f"lag cover only {cut['complete_from']} on (newest first). Shorten --since or raise --max-events."
        )
    stages = report.get("stages_ms") or {}
    if stages:
        out.append(
            "where the lag comes from (p50 / p99): "
            + ", ".join(f"{shown(stage)} {_ms(s['p50'])} / {_ms(s['p99'])}" for stage, s in stages.items())
        )
    out.append("")
    for table, entry in report["tables"].items():
        counts = entry["counts"]
        out.append(
            f"{shown(table)}: received {counts['received']}, applied {counts['applied']}, "
            f"stale {counts['stale_skipped']}, failed {counts['failed']}, rejected {counts['rejected']}, "
            f"dead letters {entry['dead_letters']}"
        )
        events = entry.get("events") or {}
        if events.get("published") or events.get("failed"):
            out.append(f"  events        published {events['published']}, failed {events['failed']}")
        last = entry["last_applied"]
        if last:
            out.append(
                f"  last applied  {last['at']}  {shown(last['sink'])} key={shown(last['key'])} "
                f"version={shown(last['version'])} lag={_ms(last['lag_ms'])} "
                f"correlation_id={shown(last['correlation_id'])}"
            )
        else:
            out.append("  last applied  none in the window")
        for sink, lag in entry["lag_ms"].items():
            out.append(
                f"  lag {shown(sink):<11} last {_ms(lag['last'])}  p50 {_ms(lag['p50'])}  p99 {_ms(lag['p99'])}  "
                f"max {_ms(lag['max'])}  ({lag['samples']} writes)"
            )
    return "\n".join(out)


@click.command(
    "status",
    help=described(__doc__),
    short_help="replication lag, last applied change, counts and dead letters, per table",
)
@stack_options
@click.option("--since", type=DURATION, default="1h", help="window to report on (default: 1h)")
@click.option("--max-events", type=int, default=20_000, help="log events read per function at most")
def command(stack_name: str | None, as_json: bool, since: float, max_events: int) -> int:
    report = collect(stack_name, since, max_events)
    print(json.dumps(report, indent=2, default=str) if as_json else render(report))
    return 0
