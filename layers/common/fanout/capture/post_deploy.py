"""The post-deploy hook's logic: a CloudFormation custom resource that migrates the source database.

On Create and Update it applies the migrations (``migrations_dir``, shipped beside the hook,
db/hook.py) with :class:`fanout.capture.migrations.MigrationRunner`, filling
``${parser_function_arn}`` from the ``ParserFunctionArn`` property. On Delete it leaves the
database alone, unless ``RemoveTriggersOnDelete`` is ``"true"``: then it drops every trigger of
the schema whose name starts with ``fanout_`` (the naming rule for triggers in the migrations)
and the migration history, so a later install starts from scratch.

CloudFormation waits for an answer PUT to a pre-signed URL, so every invocation answers
exactly once: SUCCESS, FAILED with the error and the log stream to read, or — when the
function is about to run out of time — FAILED "timed out". A stack is never left hanging.
Written by hand rather than with a custom-resource library: the answer's exact rules (one
answer whoever comes first, the reason cut to CloudFormation's 4096 bytes, no retry of a 4xx)
are what tests/integration/test_post_deploy_hook.py holds it to.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from fanout.capture.migrations import MigrationReport, MigrationRunner
from fanout.config import DatabaseSettings
from fanout.source.connection import connect

logger = logging.getLogger("fanout.post_deploy_hook")
logger.setLevel(logging.INFO)

MAX_RESPONSE_BYTES = 4096  # CloudFormation rejects larger response bodies
TIMEOUT_MARGIN_MS = 3000  # answer "timed out" this long before Lambda stops the function
TRIGGER_PREFIX = "fanout_"


class LambdaContext(Protocol):
    log_stream_name: str
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


class Migrator(Protocol):
    """What the hook needs from :class:`MigrationRunner` (tests pass fakes)."""

    def migrate(self, dry_run: bool = False) -> MigrationReport: ...

    def uninstall(self, trigger_prefix: str = TRIGGER_PREFIX) -> list[str]: ...


MigratorFactory = Callable[[Path, Mapping[str, str], str], Migrator]
ResponseSender = Callable[[str, bytes], None]


class ResponseDeliveryError(RuntimeError):
    """The response could not be PUT to CloudFormation's URL."""


def migrator_from_env(directory: Path, placeholders: Mapping[str, str], applied_by: str) -> Migrator:
    """A runner for the database the function's environment names (DB_HOST, DB_NAME, ...)."""
    settings = DatabaseSettings.from_env()
    return MigrationRunner(lambda: connect(settings), directory, placeholders, applied_by=applied_by)


def put_response(url: str, body: bytes, *, attempts: int = 3, backoff_s: float = 0.5, timeout_s: float = 5.0) -> None:
    """PUT ``body`` to the pre-signed URL, retrying network errors and 5xx answers.

    ``Content-Type`` is sent empty, as AWS's own cfn-response does: the URL is signed
    without one, and S3 would reject a request whose headers differ from the signature.
    """
    if not url.startswith(("https://", "http://")):
        raise ResponseDeliveryError(f"response URL has an unexpected scheme: {url[:40]!r}")
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                logger.info("response delivered (HTTP %s, attempt %d)", reply.status, attempt)
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # e.g. 403 for an expired URL: trying again cannot help
                raise ResponseDeliveryError(f"response rejected with HTTP {exc.code}") from exc
            last_error = exc
        except OSError as exc:  # URLError, connection reset, timeout
            last_error = exc
        logger.warning("response delivery attempt %d of %d failed: %s", attempt, attempts, last_error)
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise ResponseDeliveryError(f"response not delivered after {attempts} attempts: {last_error}")


def encode_response(
    event: Mapping[str, Any],
    status: str,
    physical_resource_id: str,
    *,
    message: str = "",
    log_stream_name: str = "",
    data: Mapping[str, str] | None = None,
) -> bytes:
    """The JSON body CloudFormation expects, with ``Reason`` cut to keep it within 4096 bytes.

    The reason is ``message`` followed by the log stream name; only the message is cut.
    """
    suffix = f" (log stream: {log_stream_name})" if log_stream_name else ""
    fields: dict[str, Any] = {
        "Status": status,
        "Reason": "",
        "PhysicalResourceId": physical_resource_id,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "NoEcho": False,
        "Data": dict(data or {}),
    }

    def encoded(message_length: int) -> bytes:
        cut = message if message_length >= len(message) else message[:message_length] + "..."
        fields["Reason"] = (cut + suffix).strip()
        return json.dumps(fields).encode("utf-8")

    body = encoded(len(message))
    if len(body) <= MAX_RESPONSE_BYTES:
        return body
    low, high = 0, len(message) - 1  # the longest prefix that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if len(encoded(middle)) <= MAX_RESPONSE_BYTES:
            low = middle
        else:
            high = middle - 1
    return encoded(low)


class _SingleAnswer:
    """Answers CloudFormation at most once, whoever asks first: the handler or the timer."""

    def __init__(self, event: Mapping[str, Any], context: LambdaContext, send: ResponseSender) -> None:
        self._event = event
        self._context = context
        self._send = send
        self._lock = threading.Lock()
        self.sent: dict[str, Any] | None = None

    def answer(
        self, status: str, physical_resource_id: str, message: str = "", data: Mapping[str, str] | None = None
    ) -> bool:
        with self._lock:
            if self.sent is not None:
                logger.warning("not answering %s: already answered %s", status, self.sent["Status"])
                return False
            body = encode_response(
                self._event,
                status,
                physical_resource_id,
                message=message,
                log_stream_name=self._context.log_stream_name if status == "FAILED" else "",
                data=data,
            )
            self.sent = json.loads(body)
        logger.info(
            "answering %s for %s %s: %s",
            status,
            self._event.get("RequestType"),
            self._event.get("LogicalResourceId"),
            self.sent["Reason"] or self.sent["Data"],
        )
        try:
            self._send(str(self._event["ResponseURL"]), body)
        except Exception:
            logger.exception("could not deliver the response to CloudFormation")
        return True


def _placeholders(properties: Mapping[str, Any]) -> dict[str, str]:
    arn = properties.get("ParserFunctionArn")
    if not isinstance(arn, str) or not arn:
        raise ValueError("resource property ParserFunctionArn is required")
    extra = properties.get("Placeholders", {})
    if not isinstance(extra, Mapping) or not all(isinstance(v, str) for v in extra.values()):
        raise ValueError("resource property Placeholders must be a map of strings")
    if "parser_function_arn" in extra:
        raise ValueError("give parser_function_arn through ParserFunctionArn, not Placeholders")
    return {**{str(k): v for k, v in extra.items()}, "parser_function_arn": arn}


def _new_physical_resource_id(properties: Mapping[str, Any], env: Mapping[str, str]) -> str:
    name = str(properties.get("DatabaseName") or env.get("DB_NAME", "")).strip()
    if not name:
        raise ValueError("the database name is unknown: set DB_NAME or the DatabaseName property")
    return f"fanout-migrations-{name}"


def _run(event: Mapping[str, Any], migrations_dir: Path, make_migrator: MigratorFactory) -> dict[str, str]:
    """Do what the request asks; return the response Data. Raises on failure."""
    request_type = event.get("RequestType")
    properties: Mapping[str, Any] = event.get("ResourceProperties") or {}
    applied_by = f"cloudformation:{event.get('StackId', 'unknown')}"
    if request_type in ("Create", "Update"):
        report = make_migrator(migrations_dir, _placeholders(properties), applied_by).migrate()
        return {
            "AppliedVersions": ",".join(str(v) for v in report.applied),
            "CurrentVersion": str(report.current_version or 0),
        }
    if request_type == "Delete":
        if str(properties.get("RemoveTriggersOnDelete", "false")).strip().lower() == "true":
            migrator = make_migrator(migrations_dir, {}, applied_by)
            dropped = migrator.uninstall(TRIGGER_PREFIX)
            return {"RemovedTriggers": ",".join(dropped)}
        logger.info("Delete: leaving the database as it is (RemoveTriggersOnDelete is not 'true')")
        return {}
    raise ValueError(f"unknown RequestType {request_type!r}")


def process_event(
    event: Mapping[str, Any],
    context: LambdaContext,
    *,
    migrations_dir: Path,
    make_migrator: MigratorFactory = migrator_from_env,
    send: ResponseSender = put_response,
    env: Mapping[str, str] | None = None,
    timeout_margin_ms: int = TIMEOUT_MARGIN_MS,
) -> dict[str, Any] | None:
    """Handle one custom-resource request and answer it exactly once.

    Returns the response that was sent (``None`` when there is nowhere to send one).
    """
    env = os.environ if env is None else env
    if not event.get("ResponseURL"):
        logger.error("event has no ResponseURL; cannot answer CloudFormation: %s", dict(event))
        return None
    responder = _SingleAnswer(event, context, send)
    properties: Mapping[str, Any] = event.get("ResourceProperties") or {}
    physical_resource_id = str(event.get("PhysicalResourceId") or "")
    fallback_id = physical_resource_id or context.log_stream_name

    def time_out() -> None:
        responder.answer("FAILED", fallback_id, "timed out: the post-deploy hook ran out of time")

    remaining_s = max(context.get_remaining_time_in_millis() - timeout_margin_ms, 0) / 1000
    timer = threading.Timer(remaining_s, time_out)
    timer.daemon = True
    timer.start()
    try:
        if not physical_resource_id:  # Create: a stable id, so a redeploy is an update
            physical_resource_id = _new_physical_resource_id(properties, env)
            fallback_id = physical_resource_id
        data = _run(event, migrations_dir, make_migrator)
        responder.answer("SUCCESS", physical_resource_id, data=data)
    except Exception as exc:
        logger.exception("%s request failed", event.get("RequestType"))
        responder.answer("FAILED", fallback_id, str(exc) or type(exc).__name__)
    finally:
        timer.cancel()
        # If the timer has fired, let its PUT finish: Lambda freezes the process on return.
        timer.join(timeout_margin_ms / 1000)
    return responder.sent
