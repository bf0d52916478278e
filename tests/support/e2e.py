"""Waiting for and comparing a row on the deployed local stack (e2e tests; ``stack``: tests/e2e/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.operations.verify import compare_row

POSTS = default_mappings().get("posts")
WAIT_SECONDS = 90.0


def wait_until(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def key_change(key: int) -> Change:
    return Change("posts", (("id", key),), "update", 0)


def document(stack: dict[str, Any], key: int) -> dict[str, Any] | None:
    from opensearchpy.exceptions import NotFoundError, TransportError

    try:
        return stack["opensearch"].get(index=POSTS.opensearch_index, id=str(key))["_source"]
    except NotFoundError:
        return None
    except TransportError as exc:
        if exc.status_code == 503:  # the fetcher is creating the index: its shard is not started yet
            return None
        raise


def item(stack: dict[str, Any], key: int) -> dict[str, Any] | None:
    return stack["table"].get_item(Key={"pk": f"posts#{key}"}, ConsistentRead=True).get("Item")


def agreed(stack: dict[str, Any], key: int) -> Any:
    comparison = compare_row(stack["db"], POSTS, key_change(key), stack["opensearch"], stack["table"])
    return comparison if comparison.agrees else None
