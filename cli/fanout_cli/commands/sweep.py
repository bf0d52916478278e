"""``fanout sweep``: ring the parser when changes wait in the change log, as the scheduled sweeper does.

    fanout sweep            one run: ring the parser if rows wait in the change log
    fanout sweep --status   how many changes wait in the change log, and since when

The SweeperFunction does this every minute: a ring that was lost, or a writer that
outlived its drainer, leaves committed rows in the log, and a ring makes a drainer take
them. Use this command to look, or to ring at once. Needs DB_HOST, DB_NAME,
DB_USER/DB_PASSWORD or DB_SECRET_ARN, and for a run also PARSER_FUNCTION_NAME and the
AWS credentials and region to invoke the parser.
"""

from __future__ import annotations

import json

import click

from fanout.config import DatabaseSettings
from fanout_cli.options import described, json_option


@click.command(
    "sweep",
    help=described(__doc__),
    short_help="ring the parser when changes wait in the change log",
)
@click.option("--status", is_flag=True, help="show what waits; ring nothing")
@json_option
def command(status: bool, as_json: bool) -> int:
    from fanout.capture.change_log_status import change_log_status
    from fanout.capture.sweep import sweep
    from fanout.config import SweeperSettings
    from fanout.source.connection import connect

    settings = DatabaseSettings.from_env()
    sweeper = None if status else SweeperSettings.from_env()
    conn = connect(settings)
    busy = False
    try:
        if sweeper is None:
            log_status = change_log_status(conn)
        else:
            import boto3

            result = sweep(conn, boto3.client("lambda"), sweeper.parser_function_name)
            busy, log_status = result.busy, result.status
    finally:
        conn.close()
    if as_json:
        print(json.dumps({"busy": busy, "change_log": log_status and log_status.__dict__}, default=str, indent=2))
    elif busy:
        print("another sweep is under way; it rings the parser if rows wait")
    elif log_status is None:
        print("no change log in this database (migrations before V006)")
    else:
        age = f"{log_status.oldest_age_seconds:.1f}s" if log_status.oldest_age_seconds is not None else "-"
        rung = "; the parser was rung to drain them" if sweeper is not None and log_status.depth else ""
        print(f"change log: {log_status.depth} row(s) waiting, oldest {age}{rung}")
    return 0
