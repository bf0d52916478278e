"""The time a function has left: work is bounded by it, so nothing is killed mid-write (docs/architecture.md,
"Work bounded by the time left").

Lambda stops a function at its timeout whatever it is doing: a drainer killed between its hand-off and its
commit sends its changes twice, a fetcher killed between two sinks' writes leaves one sink behind until the
retry, and each kill is a "Task timed out" that counts against the queue's receives. So the drainer and the
fetcher ask a :class:`Deadline` before each step and stop *before* one that may not fit: a step is assumed to
take up to twice the longest one so far (:class:`Pace`), never less than a floor; what is left is handed on
(the drainer rings its successor) or answered as unprocessed (the fetcher's partial batch response).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MARGIN_SECONDS = 3.0  # kept back from the function's timeout: the answer, the log flush, a slow step


class TimeLeft(Protocol):
    def left(self) -> float:
        """Seconds of work left (may be 0, never negative)."""
        ...


@dataclass(frozen=True)
class Deadline:
    """An instant on the monotonic clock; ``left()`` is the time until it."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def of_context(cls, context: Any, margin_seconds: float = DEFAULT_MARGIN_SECONDS) -> Deadline:
        """The Lambda context's remaining time, less ``margin_seconds``; no context (a test, a script): no limit."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return NO_DEADLINE
        return cls.after(remaining() / 1000 - margin_seconds)

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())


NO_DEADLINE = Deadline(math.inf)


@dataclass
class Pace:
    """How long the next step may take: twice the longest step timed so far, at least ``floor_seconds``."""

    floor_seconds: float
    longest: float = field(default=0.0)

    def allows(self, time_left: TimeLeft) -> bool:
        """Whether a step still fits in the time left."""
        return time_left.left() > max(self.floor_seconds, 2 * self.longest)

    def timed(self, started: float) -> None:
        """A step that began at ``started`` (``time.monotonic()``) has ended."""
        self.longest = max(self.longest, time.monotonic() - started)
