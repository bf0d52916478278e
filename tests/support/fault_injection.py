"""Faults on demand, for tests/integration/test_faults.py.

- :class:`FaultyEndpoint`: an HTTP forwarder in front of an AWS endpoint (DynamoDB on
  ministack). ``cut()`` closes its port, so clients get *connection refused*, as from an
  endpoint that is down; ``restore()`` listens on the same port again. ``throttle(n, m)``
  answers the next ``n`` PutItem (and ``m`` TransactWriteItems) requests the way DynamoDB does when it throttles (HTTP
  400, ``com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException``, the
  documented low-level error shape, parsed by the real botocore client). ``before_put``
  runs a hook before a write (PutItem, TransactWriteItems) is forwarded (e.g. to kill the
  process that sent it, and drop the write).
- :class:`PartialPutEvents`: an HTTP forwarder in front of EventBridge that answers chosen entries of a
  ``PutEvents`` request as failed (per-entry ``ErrorCode``, as EventBridge does) and forwards the rest.
- :class:`QueueDelivery`: delivers a message to a handler as the fetch queue's event source
  does: received while the answer names it, at most ``FetchMaxReceiveCount`` times (read from
  template.yaml), then moved to the dead-letter queue by the queue's redrive policy. The queue
  waits out a visibility timeout between receives; here they follow at once (what is retried,
  and how often, is what matters to the outcome). tests/e2e/test_operations.py shows the real
  thing on the deployed stack.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}


class FaultyEndpoint:
    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._throttle_left = 0
        self._throttle_transactions_left = 0
        self.port = 0
        self.operations: list[str] = []  # X-Amz-Target of every request that reached the endpoint
        self.throttled = 0
        # Called with each write's ordinal (PutItem or TransactWriteItems: 1, 2, ...) before it is forwarded;
        # True drops it unanswered.
        self.before_put: Callable[[int], bool] | None = None
        self._puts = 0
        self._server: ThreadingHTTPServer | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Listen (again, on the same port)."""
        endpoint = self

        class Forward(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = self.headers.get("X-Amz-Target", "")
                endpoint.operations.append(operation)
                if operation.endswith(".TransactWriteItems"):
                    with endpoint._lock:
                        throttle = endpoint._throttle_transactions_left > 0
                        if throttle:
                            endpoint._throttle_transactions_left -= 1
                            endpoint.throttled += 1
                    if throttle:
                        self._answer(400, {"x-amzn-RequestId": uuid.uuid4().hex}, json.dumps(THROTTLED).encode())
                        return
                if operation.endswith((".PutItem", ".TransactWriteItems")):
                    with endpoint._lock:
                        endpoint._puts += 1
                        ordinal = endpoint._puts
                    if endpoint.before_put is not None and endpoint.before_put(ordinal):
                        self.close_connection = True  # dropped: no answer, nothing forwarded
                        return
                if operation.endswith(".PutItem"):
                    with endpoint._lock:
                        throttle = endpoint._throttle_left > 0
                        if throttle:
                            endpoint._throttle_left -= 1
                            endpoint.throttled += 1
                    if throttle:
                        self._answer(400, {"x-amzn-RequestId": uuid.uuid4().hex}, json.dumps(THROTTLED).encode())
                        return
                conn = http.client.HTTPConnection(*endpoint._target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                payload = response.read()
                conn.close()
                passed = {k: v for k, v in response.getheaders() if k.lower() in ("x-amzn-requestid", "x-amz-crc32")}
                self._answer(response.status, passed, payload)

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Forward)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def cut(self) -> None:
        """Stop listening: connections are refused until :meth:`restore`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def throttle(self, puts: int, transactions: int = 0) -> None:
        with self._lock:
            self._throttle_left = puts
            self._throttle_transactions_left = transactions

    def close(self) -> None:
        self.cut()


def queue_batch(body: Any, message_id: str, receive: int = 1) -> dict[str, Any]:
    """An SQS event of one record carrying ``body``, as the fetch queue's event source delivers it."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"{message_id}-{receive}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": str(receive)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
            }
        ]
    }


class QueueDelivery:
    """The fetch queue's delivery of one message to a handler: received until the answer no longer names it
    (partial batch response) or ``max_receives`` is reached, then moved to the dead-letter queue (the body)."""

    def __init__(
        self, handler: Callable[[Any, Any], Any], function_arn: str, max_receives: int, sqs: Any, dlq_url: str
    ):
        self._handler = handler
        self._function_arn = function_arn
        self._max_receives = max_receives
        self._sqs = sqs
        self._dlq_url = dlq_url
        self.attempts = 0
        self.failures: list[str] = []

    def __call__(self, body: Any) -> bool:
        """Deliver a message with ``body``; True if a receive succeeded, False if it went to the dead-letter queue."""
        message_id = str(uuid.uuid4())
        for receive in range(1, self._max_receives + 1):
            self.attempts += 1
            try:
                answer = self._handler(
                    queue_batch(body, message_id, receive), Context(str(uuid.uuid4()), self._function_arn)
                )
            except Exception as exc:  # noqa: BLE001 - what the event source sees as a failed batch
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if not answer.get("batchItemFailures"):
                return True
            self.failures.append("; ".join(answer.get("failures") or ["the record failed"]))
        self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=json.dumps(body))  # the redrive policy's move
        return False


class Context:
    """The bits of a Lambda context object the handlers read."""

    def __init__(self, request_id: str, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = function_arn.rsplit(":", 1)[-1]
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = function_arn

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class PartialPutEvents:
    """An HTTP forwarder in front of EventBridge (ministack) that fails chosen entries of ``PutEvents``.

    ``fail(which, code, times)``: for the next ``times`` requests that carry an entry whose parsed Detail
    ``which`` selects, those entries are taken out of the request before it is forwarded (they never reach the
    bus) and answered in their places with ``code``, as EventBridge answers a partly failed request (HTTP 200,
    ``FailedEntryCount``, per-entry ``ErrorCode``), to the real botocore client. ``requests`` keeps every
    PutEvents request's entries as the client sent them."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._faults: list[tuple[Callable[[dict[str, Any]], bool], str, int]] = []
        self.requests: list[list[dict[str, Any]]] = []
        endpoint = self

        class Forward(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                failed: dict[int, str] = {}
                if self.headers.get("X-Amz-Target", "").endswith(".PutEvents"):
                    request = json.loads(body)
                    entries = request["Entries"]
                    with endpoint._lock:
                        endpoint.requests.append(entries)
                        failed = endpoint._failing(entries)
                    request["Entries"] = [e for i, e in enumerate(entries) if i not in failed]
                    if not request["Entries"]:
                        self._answer(200, {}, endpoint._merge(len(entries), failed, []))
                        return
                    body = json.dumps(request).encode()
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}  # http.client's
                conn = http.client.HTTPConnection(*endpoint._target, timeout=30)
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                payload = response.read()
                conn.close()
                if failed and response.status == 200:
                    forwarded = json.loads(payload)["Entries"]
                    payload = endpoint._merge(len(failed) + len(forwarded), failed, forwarded)
                passed = {k: v for k, v in response.getheaders() if k.lower() == "x-amzn-requestid"}
                self._answer(response.status, passed, payload)

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, which: Callable[[dict[str, Any]], bool], code: str, times: int = 1) -> None:
        with self._lock:
            self._faults.append((which, code, times))

    def _failing(self, entries: list[dict[str, Any]]) -> dict[int, str]:
        """The places of this request's entries to fail, with their codes (a fault counts once per request)."""
        failed: dict[int, str] = {}
        for index, (which, code, times) in enumerate(self._faults):
            chosen = [i for i, e in enumerate(entries) if i not in failed and which(json.loads(e["Detail"]))]
            if times > 0 and chosen:
                failed.update(dict.fromkeys(chosen, code))
                self._faults[index] = (which, code, times - 1)
        return failed

    @staticmethod
    def _merge(total: int, failed: dict[int, str], forwarded: list[dict[str, Any]]) -> bytes:
        answers = iter(forwarded)
        entries = [
            {"ErrorCode": failed[i], "ErrorMessage": f"injected {failed[i]}"} if i in failed else next(answers)
            for i in range(total)
        ]
        count = sum(1 for e in entries if "ErrorCode" in e)
        return json.dumps({"FailedEntryCount": count, "Entries": entries}).encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
