"""What the long-running commands show while they work: tqdm progress bars on stderr, and the fetch path's log lines.

Bars are drawn only when stderr is a terminal (not in logs or CI) and not asked to be quiet (``--json``,
``--quiet``): tqdm's ``disable=None``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import IO, Any

from tqdm import tqdm


@contextlib.contextmanager
def command_logs(quiet: bool) -> Iterator[None]:
    """The fetch path's log lines on stderr, so stdout carries only the report (--json stays parseable);
    with ``quiet`` only its warnings and errors. No metric blobs: off Lambda nothing reads them."""
    from fanout.observability import logger, metrics_unpublished

    level = logger.log_level
    with contextlib.redirect_stdout(sys.stderr), metrics_unpublished():
        if quiet:
            logger.setLevel(max(level, logging.WARNING))
        try:
            yield
        finally:
            logger.setLevel(level)


def _bar(label: str, total: int | None, quiet: bool, stream: IO[str] | None, position: int | None = None) -> Any:
    return tqdm(
        desc=label,
        total=total,
        unit="rows",
        file=stream or sys.stderr,
        disable=True if quiet else None,  # None: only on a terminal
        dynamic_ncols=True,
        position=position,
    )


class ProgressBar:
    """One bar at a time: rows done against the estimated total (if known), rate and time left; a new bar when
    the label changes (the next table, or reconcile's next phase)."""

    def __init__(self, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self._quiet = quiet
        self._stream = stream
        self._bar: Any = None
        self._label = ""

    def update(self, label: str, done: int, total: int | None) -> None:
        if self._bar is None or label != self._label:
            self.finish()
            self._bar, self._label = _bar(label, total, self._quiet, self._stream), label
        # The total is the table's estimated row count: a bar past 100% would only say the estimate was low.
        self._bar.total = max(total, done) if total else None
        self._bar.update(done - self._bar.n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class RangeBars:
    """``fanout backfill --workers N``: one bar per key range and one for the total (rows done across runs)."""

    def __init__(self, ranges: int, quiet: bool, stream: IO[str] | None = None) -> None:
        self._done = [0] * ranges
        self._total = _bar("total", None, quiet, stream, position=0)
        self._bars = [_bar(f"range {i + 1}", None, quiet, stream, position=i + 1) for i in range(ranges)]

    def update(self, index: int, progress: Any) -> None:
        step = progress.rows_done - self._done[index]
        self._done[index] = progress.rows_done
        self._bars[index].update(step)
        self._total.update(step)

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
        self._total.close()
