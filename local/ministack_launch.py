"""Start ministack with its collector kept off the state it holds (run by ministack's own Python, not ours).

ministack holds every AWS resource it emulates in one Python heap: each DynamoDB item, queued message and log
event stays there as live objects. CPython's full collection walks that whole heap, and it runs each time the heap
grew by a quarter, so the pauses grow with the state: during a 500/s run, 15% of the samples in which ministack
held its interpreter lock were in ``gc_collect_main``, and every API it serves (the drainer's SendMessageBatch,
every sink's request) stopped for it.
AWS's services have no such pause, so the local stack would measure ministack's collector, not fanout.

So a daemon thread moves everything alive into the collector's permanent generation every ``FREEZE_SECONDS``
(``gc.freeze``): a collection then walks only what was made since, a few seconds' worth. What it gives up: a
reference cycle that was alive at a freeze and is garbage later is never collected (objects without cycles are
still freed by reference counting, frozen or not); in an emulator whose state lives as long as the process, that
is a few request objects a freeze.

    <ministack venv>/bin/python -P local/ministack_launch.py   # what local/services.py runs

``MINISTACK_GC_FREEZE_SECONDS`` (passed on by ``make up`` and ``python -m local.stack restart ministack``) sets the
interval; 0 turns the freezing off, to measure the difference (bench/results/steady_ministack_gc.md).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

FREEZE_SECONDS = float(os.environ.get("MINISTACK_GC_FREEZE_SECONDS", "5"))


def _freeze_forever(every: float) -> None:
    while True:
        time.sleep(every)
        gc.freeze()


def main() -> int:
    if FREEZE_SECONDS > 0:
        threading.Thread(target=_freeze_forever, args=(FREEZE_SECONDS,), name="gc-freeze", daemon=True).start()

    from ministack.app import main as ministack_main  # ministack's own venv: not importable by fanout's

    return int(ministack_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
