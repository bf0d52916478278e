"""A progress line with an ETA on stderr (stdlib only), for the long-running commands, and their log output.

Quiet when stderr is not a terminal (logs, CI) or when asked (``--json``, ``--quiet``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import IO


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


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressLine:
    WIDTH = 24

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False, min_interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.min_interval = min_interval
        self._last = 0.0
        self._drawn = False

    @staticmethod
    def render(label: str, done: int, total: int | None, elapsed: float, width: int = WIDTH) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if total and total > 0:
            fraction = min(1.0, done / total)
            filled = int(fraction * width)
            bar = "#" * filled + "." * (width - filled)
            left = max(0, total - done) / rate if rate > 0 else None
            eta = format_duration(left) if left is not None else "?"
            return f"{label} [{bar}] {fraction:4.0%} {done}/~{total} rows {rate:,.0f} rows/s ETA {eta}"
        return f"{label} {done} rows {rate:,.0f} rows/s elapsed {format_duration(elapsed)}"

    def update(self, label: str, done: int, total: int | None, elapsed: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write("\r\033[K" + self.render(label, done, total, elapsed))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
