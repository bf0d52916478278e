"""The one retry helper for the loops botocore's standard retry mode cannot cover.

Whole calls to AWS are retried by botocore (standard mode, :func:`fanout.pipeline.wiring.aws_config`)
and whole invocations by Lambda; what is left is work a call answered only in part: rows a
transaction cancelled with no fault of their own, keys ``BatchGetItem`` left unprocessed, an index
whose shard has not started. Those loops take their attempts from :func:`attempts`, whose sleep a
test injects so that it waits for nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

Sleep = Callable[[float], None]


def attempts(
    count: int, *, first_wait: float, most_wait: float, sleep: Sleep = time.sleep, jitter: bool = True
) -> Iterator[int]:
    """Yield 0 .. ``count - 1``, sleeping before every attempt after the first.

    The wait doubles from ``first_wait`` up to ``most_wait``; with ``jitter`` it is drawn uniformly below
    that bound (full jitter: concurrent writers that collided do not collide again in step). The caller
    breaks out of the loop when an attempt succeeds and decides what running out of attempts means.
    """
    for attempt in range(count):
        if attempt:
            bound = min(most_wait, first_wait * 2 ** (attempt - 1))
            sleep(random.uniform(0, bound) if jitter else bound)
        yield attempt
