"""Invoking a function synchronously (RequestResponse) for a redrive: the outcome is known when it returns."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fanout_cli.dead_letters.records import MAX_ERROR_CHARS


@dataclass(frozen=True)
class InvokeResult:
    ok: bool
    response: Any  # the function's answer (decoded JSON) or its error payload
    error: str = ""


Invoke = Callable[[str, Any], InvokeResult]


def lambda_invoker(lambda_client: Any) -> Invoke:
    """A synchronous (RequestResponse) invoke: the outcome is known when it returns."""

    def invoke(function_name: str, payload: Any) -> InvokeResult:
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode("utf-8"),
        )
        raw = response["Payload"].read()
        try:
            answer: Any = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode("utf-8", "replace")
        if response.get("FunctionError"):
            if isinstance(answer, dict):
                error = f"{answer.get('errorType', response['FunctionError'])}: {answer.get('errorMessage', '')}"
            else:
                error = f"{response['FunctionError']}: {answer}"
            return InvokeResult(False, answer, error[:MAX_ERROR_CHARS])
        return InvokeResult(True, answer)

    return invoke
