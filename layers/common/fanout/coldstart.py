"""A function's cold start with the garbage collector paused.

What a cold start allocates (the modules with their classes and functions, the mapping, the clients) lives as
long as the execution environment, so the collector's passes while it is built find next to nothing, yet each
full pass walks all of it again: paused, the fetcher's import took ~4% less CPU and its import with the fetch
path built ~9% less (bench/results/cold_import.md). The handlers import their modules and build their
dependencies inside :func:`collector_paused`; what an invocation allocates afterwards is collected as ever.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside the block; the collector runs again after it (even when the block raises)
    unless it was off before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
