"""The CLI's progress line: bar, rate and ETA; silent off a terminal."""

from __future__ import annotations

import io

from fanout_cli.progress import ProgressLine, format_duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_shows_the_bar_the_rate_and_the_eta() -> None:
    # Given 250 of ~1000 rows done in 10 s, Then the rate is 25 rows/s and 750 rows take 30 s more
    line = ProgressLine.render("backfill posts", 250, 1000, 10.0, width=8)
    assert line == "backfill posts [##......]  25% 250/~1000 rows 25 rows/s ETA 0:00:30"


def test_without_a_total_the_line_shows_rate_and_elapsed_time() -> None:
    assert ProgressLine.render("reconcile", 90, None, 3725.0) == "reconcile 90 rows 0 rows/s elapsed 1:02:05"
    assert format_duration(-3) == "0:00:00"


def test_it_draws_on_a_terminal_and_stays_silent_elsewhere_or_when_quiet() -> None:
    terminal, pipe, quiet = Terminal(), io.StringIO(), Terminal()
    for progress in (ProgressLine(terminal, min_interval=0), ProgressLine(pipe)):
        progress.update("x", 1, 2, 1.0)
        progress.finish()
    ProgressLine(quiet, quiet=True).update("x", 1, 2, 1.0)
    assert terminal.getvalue().startswith("\r\033[Kx [") and terminal.getvalue().endswith("\n")
    assert pipe.getvalue() == "" and quiet.getvalue() == ""
