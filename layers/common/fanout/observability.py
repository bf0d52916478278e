"""Logging and tracing shared by every function: one JSON object per log line.

Each line carries the function name and, where known, the correlation id of
the change (the parser's request id), so one change can be followed from the
parser to the fetcher with a single CloudWatch Logs Insights filter.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_SERVICE = "fanout"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": _SERVICE,
            "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def get_logger() -> logging.Logger:
    logger = logging.getLogger(_SERVICE)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
        logger.propagate = False
    return logger


def log(level: int, message: str, **fields: Any) -> None:
    """Log one structured line; ``fields`` become top-level JSON keys."""
    get_logger().log(level, message, extra={"fields": fields})


_tracing_ready = False


def enable_tracing() -> bool:
    """Patch pymysql, boto3 and HTTP clients for AWS X-Ray when running in Lambda with tracing on.

    Off the Lambda runtime (tests, the CLI, the local stack) there is no X-Ray
    daemon and no segment to attach to, so nothing is patched.
    """
    global _tracing_ready
    if _tracing_ready:
        return True
    if not os.environ.get("AWS_XRAY_DAEMON_ADDRESS") or not os.environ.get("_X_AMZN_TRACE_ID"):
        return False
    from aws_xray_sdk.core import patch

    patch(["pymysql", "boto3", "botocore", "requests", "httplib"])
    _tracing_ready = True
    return True
