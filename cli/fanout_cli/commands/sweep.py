"""``fanout sweep``: drain the fallback table into the pipeline, as the scheduled sweeper does.

    fanout sweep            one run: hand every parked change to the parser, delete what Lambda accepted
    fanout sweep --status   how many changes wait (fallback table and change log), since when, and why

The per-row triggers (up to V004) parked a change in the fanout_fallback_outbox table
when lambda_async failed; the SweeperFunction drains what is left of it every minute,
and rings the parser when rows wait in the change log (V006 on). Use this command to
drain the fallback table by hand (after fixing the Aurora grants, say) or to look.
Needs DB_HOST, DB_NAME, DB_USER/DB_PASSWORD or DB_SECRET_ARN, and for a run also
DEAD_LETTER_QUEUE_URL (where payloads Lambda refuses are recorded) and the AWS
credentials and region to invoke the parser; with PARSER_FUNCTION_NAME set, a run
also rings the parser when rows wait in the change log, as the SweeperFunction does.
"""

from __future__ import annotations

import json

import click

from fanout.config import DatabaseSettings
from fanout_cli.operator_text import shown
from fanout_cli.options import described, json_option


@click.command(
    "sweep",
    help=described(__doc__),
    short_help="hand the changes parked in the fallback table to the parser",
)
@click.option("--status", is_flag=True, help="show what waits; deliver nothing")
@click.option("--max-rows", type=int, help="rows to take in this run (default: $SWEEP_MAX_ROWS or 500)")
@json_option
def command(status: bool, max_rows: int | None, as_json: bool) -> int:
    from fanout.capture.change_log import change_log_status
    from fanout.capture.sweeper import SweeperSettings, fallback_status, sweep
    from fanout.source.connection import connect

    settings = DatabaseSettings.from_env()
    if status:
        conn = connect(settings)
        try:
            waiting = fallback_status(conn)
            log_status = change_log_status(conn)
        finally:
            conn.close()
        if as_json:
            status_json = {**waiting.__dict__, "change_log": log_status and log_status.__dict__}
            print(json.dumps(status_json, default=str, indent=2))
        else:
            oldest = waiting.oldest.isoformat(sep=" ", timespec="seconds") if waiting.oldest else "-"
            print(f"waiting: {waiting.waiting}  oldest: {oldest}  failing: {waiting.failing}")
            for row_id, attempts, error in waiting.errors:
                print(f"  row {row_id}: {attempts} attempt(s), last error: {shown(error)}")
            if log_status is not None:
                age = f"{log_status.oldest_age_seconds:.1f}s" if log_status.oldest_age_seconds is not None else "-"
                print(f"change log: {log_status.depth} row(s) waiting, oldest {age}")
        return 0
    import boto3

    from fanout.capture.change_log import ring_if_waiting
    from fanout.pipeline.rejects import QueueRejectRecorder

    sweeper = SweeperSettings.from_env()
    conn = connect(settings)
    try:
        lambda_client = boto3.client("lambda")
        report = sweep(
            conn,
            lambda_client,
            QueueRejectRecorder(boto3.client("sqs"), sweeper.dead_letter_queue_url, source="sweeper"),
            max_rows=max_rows or sweeper.max_rows,
        )
        ring = sweeper.parser_function and not report.busy
        log_status = ring_if_waiting(conn, lambda_client, sweeper.parser_function) if ring else None
    finally:
        conn.close()
    if log_status is not None and log_status.depth and not as_json:
        print(f"change log: {log_status.depth} row(s) waiting; the parser was rung to drain them")
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(
            f"delivered {report.delivered}, rejected {report.rejected} (to the DLQ), failed {report.failed}; "
            f"{report.remaining} waiting"
            + (" (another sweep is running)" if report.busy else "")
            + (f"; stopped: {report.stopped}" if report.stopped else "")
        )
    return 1 if report.failed else 0
