"""CloudWatch Logs events as the functions write them (JSON lines), at fixed times, for `fanout status`."""

from __future__ import annotations

import json
from typing import Any

T0 = 1764240000000


def event(offset_ms: int, **fields: Any) -> dict[str, Any]:
    return {"timestamp": T0 + offset_ms, "message": json.dumps({"level": "INFO", **fields})}
