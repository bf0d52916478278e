"""The lambda_async bridge: where the local ``lambda_async`` loadable function sends its calls.

Aurora MySQL's native ``lambda_async(function_arn, payload)`` calls the Lambda ``Invoke`` API
(``InvocationType=Event``) from inside the statement and returns once Lambda has accepted the call. Locally the
loadable function (``lambda_async.c`` beside this file) connects to this process over loopback, and this process
makes that same call against the local AWS endpoint (``AWS_ENDPOINT_URL``) and answers when Lambda has answered:
``OK <status>`` or ``ERR <message>``, which the function raises in the statement as Aurora raises "Lambda API
returned error: ...". Calls are served concurrently (one thread per call, up to ``--concurrency``), as Aurora's
sessions each make their own.

A client may set, per function ARN, what happens to its calls (``Control`` below): fail them with a message (an
unreachable endpoint), delay each answer (Aurora's ~35 ms a call, for the benchmarks), or not deliver them
(tests that watch the rings without a Lambda). The bridge also remembers the last calls per ARN, so a test reads
what its triggers handed to ``lambda_async``. None of this is in the function: it stays a plain hand-off.

Run: ``python local/lambda_async/bridge.py --port 4599`` (local/stack.py starts it with MySQL).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fanout.lambda_async")
DEFAULT_PORT = 4599
CALLS_KEPT_PER_ARN = 10_000
MAX_ARN_BYTES = 1024
MAX_PAYLOAD_BYTES = 256 * 1024  # Lambda's limit for an asynchronous invoke's payload


@dataclass
class Rule:
    """What the bridge does with one function ARN's calls."""

    fail: str | None = None  # answer every call with this error instead of invoking
    delay_ms: int = 0  # wait this long before answering (after the invoke)
    deliver: bool = True  # invoke Lambda; False: only remember the call


@dataclass
class State:
    lambda_client: Any
    rules: dict[str, Rule] = field(default_factory=dict)
    calls: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0

    def rule(self, arn: str) -> Rule:
        with self.lock:
            return self.rules.get(arn, Rule())

    def remember(self, arn: str, payload: str, outcome: str) -> None:
        with self.lock:
            self.served += 1
            kept = self.calls.setdefault(arn, deque(maxlen=CALLS_KEPT_PER_ARN))
            kept.append({"payload": payload, "at": time.time(), "outcome": outcome})

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        arn = str(request.get("arn", ""))
        with self.lock:
            if op == "configure":
                self.rules[arn] = Rule(
                    fail=request.get("fail"),
                    delay_ms=int(request.get("delay_ms", 0)),
                    deliver=bool(request.get("deliver", True)),
                )
                return {"ok": True}
            if op == "reset":
                self.rules.pop(arn, None)
                self.calls.pop(arn, None)
                return {"ok": True}
            if op == "calls":
                return {"ok": True, "calls": list(self.calls.get(arn, ()))}
            if op == "ping":
                return {"ok": True, "served": self.served}
        return {"ok": False, "error": f"unknown op {op!r}"}


def invoke(state: State, arn: str, payload: bytes) -> str:
    """One call as Aurora makes it; returns ``OK <status>`` or ``ERR <message>``."""
    rule = state.rule(arn)
    if rule.fail is not None:
        answer = f"ERR {rule.fail}"
    elif not rule.deliver:
        answer = "OK 202"
    else:
        try:
            response = state.lambda_client.invoke(FunctionName=arn, InvocationType="Event", Payload=payload)
            status = response.get("StatusCode")
            answer = f"OK {status}" if status == 202 else f"ERR Invoke answered {status}, expected 202"
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the statement, as Aurora's does
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            answer = f"ERR {code}: {exc}"
    if rule.delay_ms:
        time.sleep(rule.delay_ms / 1000)
    state.remember(arn, payload.decode("utf-8", "replace"), answer)
    if answer.startswith("ERR"):
        log.info("call to %s failed: %s", arn, answer[4:200])
    return " ".join(answer.splitlines()) + "\n"


class Handler(socketserver.StreamRequestHandler):
    server: Server

    def handle(self) -> None:
        header = self.rfile.readline(256).decode("ascii", "replace").split()
        try:
            if len(header) == 3 and header[0] == "CALL":
                arn_len, payload_len = int(header[1]), int(header[2])
                if not (0 < arn_len <= MAX_ARN_BYTES) or not (0 <= payload_len <= MAX_PAYLOAD_BYTES):
                    self.wfile.write(b"ERR RequestTooLargeException: payload over 256 KB\n")
                    return
                arn = self.rfile.read(arn_len).decode("utf-8", "replace")
                payload = self.rfile.read(payload_len)
                self.wfile.write(invoke(self.server.state, arn, payload).encode())
            elif len(header) == 2 and header[0] == "CTRL":
                request = json.loads(self.rfile.read(int(header[1])))
                body = json.dumps(self.server.state.control(request)).encode()
                self.wfile.write(f"OK {len(body)}\n".encode() + body)
            else:
                self.wfile.write(b"ERR InvalidRequestContentException: malformed request\n")
        except (OSError, ValueError) as exc:
            log.warning("dropped a malformed or broken request: %s", exc)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, port: int, state: State) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


class Control:
    """A client for the bridge's per-ARN settings and its memory of calls (tests and benchmarks)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(request).encode()
        with socket.create_connection(self.address, timeout=10) as sock, sock.makefile("rwb") as stream:
            stream.write(f"CTRL {len(body)}\n".encode() + body)
            stream.flush()
            header = stream.readline().split()
            if len(header) != 2 or header[0] != b"OK":
                raise RuntimeError(f"the lambda_async bridge answered {header!r}")
            answer: dict[str, Any] = json.loads(stream.read(int(header[1])))
        if not answer.get("ok"):
            raise RuntimeError(f"the lambda_async bridge refused {request}: {answer.get('error')}")
        return answer

    def configure(self, arn: str, *, fail: str | None = None, delay_ms: int = 0, deliver: bool = True) -> None:
        self._ask({"op": "configure", "arn": arn, "fail": fail, "delay_ms": delay_ms, "deliver": deliver})

    def reset(self, arn: str) -> None:
        self._ask({"op": "reset", "arn": arn})

    def calls(self, arn: str) -> list[dict[str, Any]]:
        """The calls made to ``arn`` (oldest first): ``payload`` (text), ``at`` (epoch s), ``outcome``."""
        return list(self._ask({"op": "calls", "arn": arn})["calls"])

    def ping(self) -> int:
        return int(self._ask({"op": "ping"})["served"])


def main(argv: list[str] | None = None) -> int:
    import boto3
    from botocore.config import Config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FANOUT_LAMBDA_ASYNC_PORT", DEFAULT_PORT)))
    parser.add_argument("--concurrency", type=int, default=32, help="Invoke calls in flight at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s lambda_async %(levelname)s %(message)s")
    # Aurora's call fails rather than hangs when Lambda does not answer: short timeouts, one retry.
    config = Config(
        connect_timeout=2,
        read_timeout=10,
        retries={"mode": "standard", "max_attempts": 2},
        max_pool_connections=args.concurrency,
    )
    state = State(lambda_client=boto3.client("lambda", config=config))
    server = Server(args.port, state)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving lambda_async on 127.0.0.1:%d, invoking %s", args.port, os.environ.get("AWS_ENDPOINT_URL"))
    server.serve_forever()
    log.info("stopped after %d calls", state.served)
    return 0


if __name__ == "__main__":
    sys.exit(main())
