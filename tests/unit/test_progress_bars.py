"""The CLI's progress bars (tqdm): rows against the estimated total, rate and time left; silent off a terminal."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from fanout_cli.progress import ProgressBar, RangeBars


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def last_line(stream: io.StringIO) -> str:
    return stream.getvalue().replace("\n", "\r").rstrip("\r").split("\r")[-1]


def test_the_bar_shows_the_rows_against_the_total_the_rate_and_the_time_left() -> None:
    # Given 250 of ~1000 rows done, When the bar is drawn on a terminal
    terminal = Terminal()
    bar = ProgressBar(stream=terminal)
    bar.update("backfill posts", 250, 1000)
    bar.finish()
    # Then its line names the work, the share done, the rows against the total, elapsed<left and the rate
    assert re.fullmatch(
        r"backfill posts:  25%\|.*\| 250/1000 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+rows/s\]", last_line(terminal)
    )
    assert terminal.getvalue().endswith("\n")


def test_without_a_total_the_bar_shows_rows_rate_and_elapsed_time() -> None:
    terminal = Terminal()
    bar = ProgressBar(stream=terminal)
    bar.update("reconcile posts (opensearch)", 90, None)
    bar.finish()
    assert re.fullmatch(r"reconcile posts \(opensearch\): 90rows \[\d\d:\d\d, +[\d.?]+rows/s\]", last_line(terminal))


def test_an_estimate_that_was_low_never_shows_more_than_all_of_it() -> None:
    terminal = Terminal()
    bar = ProgressBar(stream=terminal)
    bar.update("backfill posts", 1200, 1000)
    bar.finish()
    assert " 100%|" in last_line(terminal) and "1200/1200" in last_line(terminal)


def test_a_new_label_starts_a_new_bar() -> None:
    terminal = Terminal()
    bar = ProgressBar(stream=terminal)
    bar.update("reconcile posts (source)", 10, 10)
    bar.update("reconcile posts (opensearch)", 4, None)
    bar.finish()
    lines = [line.split("\r")[-1] for line in terminal.getvalue().rstrip("\n").split("\n")]
    assert [line.split(":")[0] for line in lines] == ["reconcile posts (source)", "reconcile posts (opensearch)"]


def test_it_draws_on_a_terminal_and_stays_silent_elsewhere_or_when_quiet() -> None:
    terminal, pipe, quiet = Terminal(), io.StringIO(), Terminal()
    for progress in (ProgressBar(stream=terminal), ProgressBar(stream=pipe), ProgressBar(quiet=True, stream=quiet)):
        progress.update("x", 1, 2)
        progress.finish()
    assert last_line(terminal).startswith("x:  50%|")
    assert pipe.getvalue() == "" and quiet.getvalue() == ""


def test_parallel_backfill_shows_a_bar_per_range_and_the_total_only_on_a_terminal() -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bars = RangeBars(2, quiet=False, stream=stream)
        bars.update(0, SimpleNamespace(rows_done=30))
        bars.update(1, SimpleNamespace(rows_done=12))
        bars.update(0, SimpleNamespace(rows_done=50))
        bars.close()
    drawn = terminal.getvalue()
    assert "total: 62rows" in drawn and "range 1: 50rows" in drawn and "range 2: 12rows" in drawn
    assert pipe.getvalue() == ""
