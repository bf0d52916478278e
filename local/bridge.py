"""The lambda_async bridge (local stack only).

Aurora MySQL's native ``lambda_async`` invokes Lambda itself. MariaDB has no
such function, so the local stack installs a shim (``lambda_async_shim.sql``)
that appends each call to ``fanout_lambda_async_outbox``; this process tails
that table and makes the same call Aurora would: ``Invoke`` with
``InvocationType=Event`` on the given function ARN, with the given payload.

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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "common"))

from fanout.config import DatabaseSettings  # noqa: E402
from fanout.db import connect  # noqa: E402

OUTBOX = "fanout_lambda_async_outbox"
PERMANENT_ERRORS = {
    "InvalidRequestContentException",
    "ResourceNotFoundException",
    "RequestTooLargeException",
    "InvalidParameterValueException",
}
log = logging.getLogger("fanout.bridge")


class Bridge:
    def __init__(self, conn: Any, lambda_client: Any, batch_size: int = 200) -> None:
        self._conn = conn
        self._lambda = lambda_client
        self._batch_size = batch_size
        self.invoked = 0

    def ensure_outbox_columns(self) -> None:
        """The bridge's bookkeeping columns (the shim itself needs none)."""
        with self._conn.cursor() as cur:
            cur.execute(f"ALTER TABLE {OUTBOX} ADD COLUMN IF NOT EXISTS last_error TEXT NULL")

    def pump_once(self) -> int:
        """Deliver every pending row once; return how many were invoked."""
        from botocore.exceptions import BotoCoreError, ClientError

        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT id, function_arn, payload FROM {OUTBOX} WHERE last_error IS NULL ORDER BY id LIMIT %s",  # noqa: S608
                (self._batch_size,),
            )
            rows = cur.fetchall()
        delivered = 0
        for row_id, function_arn, payload in rows:
            try:
                response = self._lambda.invoke(
                    FunctionName=function_arn, InvocationType="Event", Payload=payload.encode("utf-8")
                )
                if response.get("StatusCode") != 202:
                    raise RuntimeError(f"Invoke answered {response.get('StatusCode')}, expected 202")
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in PERMANENT_ERRORS:
                    raise
                log.error("outbox row %s refused by Lambda (%s); kept with its error", row_id, code)
                with self._conn.cursor() as cur:
                    cur.execute(f"UPDATE {OUTBOX} SET last_error = %s WHERE id = %s", (f"{code}: {exc}", row_id))  # noqa: S608
                continue
            except BotoCoreError:
                raise
            with self._conn.cursor() as cur:
                cur.execute(f"DELETE FROM {OUTBOX} WHERE id = %s", (row_id,))  # noqa: S608
            delivered += 1
        self.invoked += delivered
        return delivered


def main() -> int:
    import boto3

    logging.basicConfig(level=logging.INFO, format="%(asctime)s bridge %(levelname)s %(message)s")
    poll_seconds = float(os.environ.get("BRIDGE_POLL_SECONDS", "0.05"))
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
                bridge = Bridge(connect(settings), lambda_client)
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
