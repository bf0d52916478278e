"""Waiting for a condition: the one poll loop the tests share (never a bare sleep standing in for an event)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until[T](what: str, check: Callable[[], T], timeout: float = 90.0, interval: float = 0.25) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, and return that; fail the
    test naming ``what`` (and the last value seen) after ``timeout`` seconds. The default suits a change that
    crosses the deployed functions (e2e); a test of one component passes its own, shorter one."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
