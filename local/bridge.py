"""The lambda_async bridge (local stack only).

Aurora MySQL's native ``lambda_async`` invokes Lambda itself. MariaDB has no
such function, so the local stack installs a shim (``lambda_async_shim.sql``)
that appends each call to ``fanout_lambda_async_outbox``; this process tails
that table and makes the same call Aurora would: ``Invoke`` with
``InvocationType=Event`` on the given function ARN, with the given payload.

Calls are delivered concurrently (``BRIDGE_CONCURRENCY``, default 8), as Aurora's
sessions each make their own: a single delivery loop would throttle the per-row
design below what it does on Aurora, and the benchmark would flatter the change log.

Delivery is at least once (a crash between invoke and delete re-sends a row),
which is what the product must tolerate from Aurora and Lambda anyway. A row
that Lambda refuses for good (bad payload, unknown function) is kept, marked
with the error, and logged, never dropped; a transient failure (the local AWS
endpoint down) is retried with backoff.

Run: ``python local/bridge.py`` with DB_HOST, DB_PORT, DB_USER, DB_PASSWORD,
DB_NAME and AWS_ENDPOINT_URL in the environment.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "common"))

from fanout.config import DatabaseSettings  # noqa: E402
from fanout.source.connection import connect  # noqa: E402

OUTBOX = "fanout_lambda_async_outbox"
PERMANENT_ERRORS = {
    "InvalidRequestContentException",
    "ResourceNotFoundException",
    "RequestTooLargeException",
    "InvalidParameterValueException",
}
log = logging.getLogger("fanout.bridge")


class Bridge:
    def __init__(self, conn: Any, lambda_client: Any, batch_size: int = 200, concurrency: int = 8) -> None:
        self._conn = conn
        self._lambda = lambda_client  # botocore clients are thread-safe
        self._batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bridge")
        self.invoked = 0

    def ensure_outbox_columns(self) -> None:
        """The bridge's bookkeeping columns (the shim itself needs none)."""
        with self._conn.cursor() as cur:
            cur.execute(f"ALTER TABLE {OUTBOX} ADD COLUMN IF NOT EXISTS last_error TEXT NULL")

    def pump_once(self) -> int:
        """Deliver every pending row once, ``concurrency`` invokes at a time; return how many were invoked."""
        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT id, function_arn, payload FROM {OUTBOX} WHERE last_error IS NULL ORDER BY id LIMIT %s",  # noqa: S608
                (self._batch_size,),
            )
            rows = cur.fetchall()
        if not rows:
            return 0
        outcomes = list(self._pool.map(self._invoke, rows))
        delivered = 0
        for (row_id, _, _), outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            with self._conn.cursor() as cur:
                if outcome:  # Lambda refused it for good: kept with its error
                    cur.execute(f"UPDATE {OUTBOX} SET last_error = %s WHERE id = %s", (outcome, row_id))  # noqa: S608
                else:
                    cur.execute(f"DELETE FROM {OUTBOX} WHERE id = %s", (row_id,))  # noqa: S608
                    delivered += 1
        self.invoked += delivered
        return delivered

    def _invoke(self, row: tuple[Any, str, str]) -> str | BaseException:
        """``""`` when Lambda accepted the call, the error text when it refused it for good, else the error."""
        from botocore.exceptions import ClientError

        row_id, function_arn, payload = row
        try:
            response = self._lambda.invoke(FunctionName=function_arn, InvocationType="Event", Payload=payload.encode())
            if response.get("StatusCode") != 202:
                return RuntimeError(f"Invoke answered {response.get('StatusCode')}, expected 202")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in PERMANENT_ERRORS:
                return exc
            log.error("outbox row %s refused by Lambda (%s); kept with its error", row_id, code)
            return f"{code}: {exc}"
        except Exception as exc:  # noqa: BLE001 - handed back to the delivery loop, which backs off
            return exc
        return ""


def main() -> int:
    import boto3

    logging.basicConfig(level=logging.INFO, format="%(asctime)s bridge %(levelname)s %(message)s")
    poll_seconds = float(os.environ.get("BRIDGE_POLL_SECONDS", "0.05"))
    concurrency = int(os.environ.get("BRIDGE_CONCURRENCY", "8"))
    settings = DatabaseSettings.from_env()
    lambda_client = boto3.client("lambda")
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = poll_seconds
    bridge: Bridge | None = None
    log.info("tailing %s.%s on %s:%s", settings.name, OUTBOX, settings.host, settings.port)
    while not stopping:
        try:
            if bridge is None:
                bridge = Bridge(connect(settings), lambda_client, concurrency=concurrency)
                bridge.ensure_outbox_columns()
            delivered = bridge.pump_once()
            backoff = poll_seconds
            if not delivered:
                time.sleep(poll_seconds)
        except Exception as exc:  # noqa: BLE001 - a local dev loop: log, back off, reconnect
            log.warning("delivery failed, retrying in %.1fs: %s", backoff, exc)
            bridge = None
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    log.info("stopped after %d invokes", bridge.invoked if bridge else 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
