"""A function's cold start with the garbage collector paused, and what it built frozen out of its passes.

What a cold start allocates (the modules with their classes and functions, the mapping, the clients) lives as
long as the execution environment, so the collector's passes while it is built find next to nothing, yet each
full pass walks all of it again (80 passes over the fetcher's import, 52 over its fetch path). Paused, and frozen
at the end (``gc.freeze``: moved to the permanent generation, which no pass walks; merely resuming would start one
pass over everything the pause left young), the fetcher's import took 0.96 of the CPU and its cold start to a
built fetch path 0.91, side by side (docs/architecture.md, "A cold start on botocore alone"). It is the sequence
Python's documentation gives for ``gc.freeze``: disable, build what lives on, freeze, enable. The handlers import
their modules and build their dependencies inside :func:`collector_paused`; what an invocation allocates
afterwards is collected as ever.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside the block; what exists when it completes is frozen (never collected); the
    collector runs again after it (even when the block raises) unless it was off before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
